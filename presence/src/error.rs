//! Presence errors.

/// Why a presence call failed.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// The backing store cannot be reached now; the call may succeed later.
    #[error("presence backend unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with something this code does not understand.
    #[error("presence backend returned bad data: {0}")]
    Corrupt(String),
}

impl PresenceError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PresenceError::Unavailable(_))
    }
}
