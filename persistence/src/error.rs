//! Database errors, sorted by what the caller can do about them.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

#[derive(Debug, thiserror::Error)]
pub enum PersistenceError {
    /// The database cannot be reached (connection refused or lost, pool exhausted, shutting
    /// down). Nothing was committed by the failing statement; the request may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A lock could not be taken within the transaction's lock wait.
    #[error("lock wait timed out")]
    LockTimeout,
    /// The database gave up on the transaction to keep it correct (serialization failure,
    /// deadlock). Nothing was committed; a retry is safe.
    #[error("transaction aborted by a conflict: {0}")]
    Conflict(String),
    /// A unique constraint refused a row (its name, where the driver gives it).
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    /// A value left the range of its column (a balance past the largest `BIGINT`, say).
    /// Nothing was committed; the same request will fail the same way.
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// Text the database cannot store (a NUL character, say). Nothing was committed.
    #[error("text cannot be stored: {0}")]
    InvalidText(String),
    /// COMMIT failed in a way that leaves its outcome unknown.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
    /// Anything else: a bug or a schema mismatch.
    #[error("database error: {0}")]
    Other(String),
}

impl PersistenceError {
    pub(crate) fn commit(err: DbErr) -> Self {
        match PersistenceError::from(err) {
            // A conflict reported by COMMIT itself means the transaction was rolled back.
            e @ PersistenceError::Conflict(_) => e,
            e => PersistenceError::CommitUnknown(e.to_string()),
        }
    }

    /// True when retrying the same request later may succeed without any change.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PersistenceError::Unavailable(_)
                | PersistenceError::LockTimeout
                | PersistenceError::Conflict(_)
                | PersistenceError::CommitUnknown(_)
        )
    }
}

impl From<DbErr> for PersistenceError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(detail)) = err.sql_err() {
            return PersistenceError::UniqueViolation(detail);
        }
        match &err {
            DbErr::ConnectionAcquire(e) => PersistenceError::Unavailable(e.to_string()),
            DbErr::Conn(_) => PersistenceError::Unavailable(err.to_string()),
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                classify_sqlx(e, &err)
            }
            _ => PersistenceError::Other(err.to_string()),
        }
    }
}

fn classify_sqlx(e: &sea_orm::sqlx::Error, whole: &DbErr) -> PersistenceError {
    use sea_orm::sqlx::Error as E;
    match e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => PersistenceError::Unavailable(e.to_string()),
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // lock_not_available: lock_timeout ran out.
                "55P03" => PersistenceError::LockTimeout,
                // character_not_in_repertoire, untranslatable_character: a NUL in text.
                "22021" | "22P05" => PersistenceError::InvalidText(db.message().to_owned()),
                // numeric_value_out_of_range.
                "22003" => PersistenceError::OutOfRange(db.message().to_owned()),
                // serialization_failure, deadlock_detected.
                "40001" | "40P01" => PersistenceError::Conflict(db.message().to_owned()),
                // Class 08 connection exceptions; 57P01-03 admin/crash shutdown, cannot connect now.
                c if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300") => {
                    PersistenceError::Unavailable(db.message().to_owned())
                }
                // SQLITE_BUSY / SQLITE_LOCKED: another writer held the file too long.
                "5" | "6" | "517" | "262" => PersistenceError::LockTimeout,
                _ => PersistenceError::Other(whole.to_string()),
            }
        }
        _ => PersistenceError::Other(whole.to_string()),
    }
}
