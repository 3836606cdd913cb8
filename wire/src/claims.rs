//! JWT claims the gateway reads. Clients use the same struct to mint tokens.

use serde::{Deserialize, Serialize};

/// The claims of a gateway token. `sub` and `exp` are required; the rest is checked when
/// present or configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user: everything they receive is one ordered log.
    pub sub: String,
    /// Expiry, seconds since the epoch (fractions allowed, as RFC 7519 says NumericDate).
    pub exp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Space-separated scopes (`gateway.publish`, `gateway.admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Claims {
    /// Claims for `sub` expiring `ttl_secs` from `now_secs`, with no scope.
    pub fn new(sub: impl Into<String>, now_secs: u64, ttl_secs: u64) -> Self {
        Claims {
            sub: sub.into(),
            exp: (now_secs + ttl_secs) as f64,
            nbf: None,
            iat: Some(now_secs as f64),
            aud: None,
            iss: None,
            scope: None,
        }
    }

    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }
}
