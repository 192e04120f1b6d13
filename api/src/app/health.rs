//! Whether the service can serve: the database answers.

use crate::app::AppState;

/// `true` when the database answers a ping; a failure is logged (it says why, the answer
/// does not).
pub async fn database_answers(state: &AppState) -> bool {
    match state.db.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            false
        }
    }
}
