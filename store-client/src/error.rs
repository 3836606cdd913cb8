//! Store errors, with retryable ones told apart (the outbox retries those, and only those).

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or timed out: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A turn with this id is stored with other content; it is never overwritten.
    #[error("turn {0:?} is stored already with different content")]
    Conflict(String),
    /// The request cannot be served as asked (bad cursor, bad limit).
    #[error("{0}")]
    Invalid(String),
    /// Stored data this code cannot read, or a failed migration.
    #[error("store error: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if is_transient(db.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// SQLSTATE classes worth retrying: connection exceptions, serialization failures and
/// deadlocks, insufficient resources, operator intervention (shutdown); SQLite busy/locked.
fn is_transient(code: Option<&str>) -> bool {
    match code {
        Some(c) => {
            c.starts_with("08")
                || c == "40001"
                || c == "40P01"
                || c.starts_with("53")
                || c.starts_with("57")
                || c == "5"
                || c == "6" // SQLITE_BUSY, SQLITE_LOCKED
        }
        None => false,
    }
}
