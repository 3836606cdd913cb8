//! Configuration errors: each names the setting and what was wrong with it.

use std::fmt;

/// One bad setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The environment variable (or `--config FILE` for the file itself) at fault.
    pub setting: String,
    pub message: String,
}

/// Every bad setting found while loading, in the order they were met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Whether a problem names `setting`; for tests and tools.
    pub fn names(&self, setting: &str) -> bool {
        self.0.iter().any(|e| e.setting == setting)
    }
}
