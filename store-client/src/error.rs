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
            | sqlx::Error::Protocol(_)
            // A pooled connection left inside a transaction (its rollback failed, say on a
            // full disk): the pool replaces it (see `embedded::pool`), so the next try works.
            | sqlx::Error::InvalidSavePointStatement
            | sqlx::Error::BeginFailed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(ref db) if is_transient(db.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// Errors worth retrying. PostgreSQL (5-character SQLSTATE): connection exceptions,
/// serialization failures and deadlocks, insufficient resources (disk full, out of memory),
/// operator intervention (shutdown). SQLite (a number, primary code in its low byte): busy,
/// locked, out of memory, I/O error, disk full, cannot open, lock protocol.
fn is_transient(code: Option<&str>) -> bool {
    let Some(c) = code else { return false };
    if c.len() == 5 {
        return c.starts_with("08")
            || c == "40001"
            || c == "40P01"
            || c.starts_with("53")
            || c.starts_with("57");
    }
    c.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 7 | 10 | 13 | 14 | 15))
}

/// Whether a recorded failure reason names a passing condition (disk full, I/O error, a broken
/// connection): entries an earlier version set aside for one are retried after a restart.
pub fn is_transient_reason(reason: &str) -> bool {
    const PASSING: [&str; 7] = [
        "store unavailable",
        "database or disk is full",
        "disk I/O error",
        "non-zero transaction depth",
        "unexpected connection status",
        "database is locked",
        "unable to open database file",
    ];
    PASSING.iter().any(|p| reason.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_conditions_are_retryable_and_refusals_are_not() {
        for c in ["5", "6", "13", "10", "778", "517", "08006", "53100", "57P01", "40001"] {
            assert!(is_transient(Some(c)), "{c}");
        }
        for c in ["19", "1", "2067", "23505", "22021", "42P01"] {
            assert!(!is_transient(Some(c)), "{c}");
        }
        let depth = StoreError::from(sqlx::Error::InvalidSavePointStatement);
        assert!(depth.is_retryable(), "a broken pooled connection passes: {depth}");
        assert!(is_transient_reason("store error: database or disk is full"));
        assert!(!is_transient_reason("turn \"t\" is stored already with different content"));
    }
}
