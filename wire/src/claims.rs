//! JWT claims the gateway reads. Clients use the same struct to mint tokens.

use serde::{Deserialize, Serialize};

/// The claims of a gateway token. `sub` and `exp` are required; the rest is checked when
/// present or configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The user: everything they receive is one ordered log.
    pub sub: String,
    /// Expiry, seconds since the epoch (fractions allowed, as RFC 7519 says NumericDate).
    /// Written as an integer when whole (the tokens minted here always are): a client that
    /// reads it as an integer (to schedule a refresh, say) then need not round it.
    #[serde(serialize_with = "numeric_date")]
    pub exp: f64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "some_numeric_date"
    )]
    pub nbf: Option<f64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "some_numeric_date"
    )]
    pub iat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Space-separated scopes (`gateway.publish`, `gateway.admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A NumericDate (RFC 7519): an integer when it is whole, else the fraction as given.
pub(crate) fn numeric_date<S: serde::Serializer>(secs: &f64, s: S) -> Result<S::Ok, S::Error> {
    if secs.fract() == 0.0 && secs.abs() < 9.0e15 {
        s.serialize_i64(*secs as i64)
    } else {
        s.serialize_f64(*secs)
    }
}

/// [`numeric_date`] of a claim that is present (absent ones are skipped before this).
fn some_numeric_date<S: serde::Serializer>(secs: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match secs {
        Some(secs) => numeric_date(secs, s),
        None => s.serialize_none(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numeric_dates_are_written_as_integers_and_fractions_kept() {
        let c = Claims::new("u", 1_796_000_000, 60);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["exp"].as_u64(), Some(1_796_000_060), "{json}");
        assert_eq!(json["iat"].as_u64(), Some(1_796_000_000), "{json}");
        assert!(json.get("nbf").is_none(), "{json}");
        let c = Claims { exp: 1.5, nbf: Some(2.0), ..c };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!((json["exp"].as_f64(), json["nbf"].as_u64()), (Some(1.5), Some(2)), "{json}");
        let back: Claims = serde_json::from_value(json).unwrap();
        assert_eq!((back.exp, back.nbf), (1.5, Some(2.0)));
    }
}
