//! Notices of points about to expire, sent once per lot.
