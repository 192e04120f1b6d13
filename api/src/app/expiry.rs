//! Expiry of points whose date has passed, account by account.
