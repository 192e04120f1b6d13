//! Customers: enrolled, looked up, their ledger and expiring points, exported and erased.
