//! The use cases: what the service does, whoever asks (a handler, a worker, the CLI). Nothing
//! here names an HTTP type; a use case returns its own outcome ([`write::Outcome`]) or
//! [`AppError`], which the edge maps to an answer.

pub mod activation;
pub mod allocate;
pub mod error;
pub mod export;
pub mod issuance;
pub mod redeem;
pub mod settle;
pub mod state;
pub mod write;

pub use error::AppError;
pub use state::AppState;
