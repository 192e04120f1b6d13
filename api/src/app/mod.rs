//! The use cases: what the service does, whoever asks (a handler, a worker, the CLI). Nothing
//! here names an HTTP type; a use case returns its own outcome ([`write::Outcome`]) or
//! [`AppError`], which the edge maps to an answer.

pub mod activation;
pub mod allocate;
pub mod currency;
pub mod customer_lists;
pub mod customers;
pub mod endpoints;
pub mod error;
pub mod expiry;
pub mod export;
pub mod health;
pub mod holds;
pub mod issuance;
pub mod keys;
pub mod liability;
pub mod notices;
pub mod programs;
pub mod redeem;
pub mod reversal;
pub mod rewards;
pub mod settle;
pub mod state;
pub mod transfers;
pub mod write;

pub use error::AppError;
pub use state::AppState;
