//! Transfers of points between two customers, keeping their expiry dates.
