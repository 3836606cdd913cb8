//! Token verification (PROTOCOL.md, "Authentication").
//!
//! Algorithms are pinned by configuration: HS256 when a secret is set, RS256 or ES256 for the
//! configured public key. Each algorithm is bound to its own key, so a token cannot pick the
//! key type (`alg: none`, or HS256 "signed" with the RSA public key as secret, are refused).
//! The signature is checked by `jsonwebtoken`; claims are checked here, with a leeway in
//! milliseconds and a message that says which claim was wrong.

mod extractor;

pub use extractor::Authenticated;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use config::{Config, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// Who a verified token speaks for.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Arc<str>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: f64,
    pub publish: bool,
    pub admin: bool,
    /// The `tid` claim (v1.1): the user's organisation, for metrics and audit records.
    pub tenant: Option<Arc<str>>,
}

/// Why a token was refused; `code` goes into the 401 body or the error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> AuthError {
    AuthError { code: "invalid_token", message: message.into() }
}

/// A configuration problem with the keys; start-up fails naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct KeyError {
    pub setting: &'static str,
    pub message: String,
}

/// Verifies gateway tokens.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    public: Option<(Algorithm, DecodingKey)>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway_ms: u64,
    /// The accepted algorithms, for error messages.
    accepted: String,
}

impl Verifier {
    pub fn from_config(cfg: &Config) -> Result<Self, KeyError> {
        let hs256 = cfg.auth_hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes()));
        let public = match &cfg.auth_public_key_pem {
            None => None,
            Some(pem) => Some(public_key(pem, cfg.auth_public_key_alg)?),
        };
        let mut accepted: Vec<&str> = Vec::new();
        if hs256.is_some() {
            accepted.push("HS256");
        }
        if let Some((alg, _)) = &public {
            accepted.push(if *alg == Algorithm::RS256 { "RS256" } else { "ES256" });
        }
        Ok(Verifier {
            hs256,
            public,
            audience: cfg.auth_audience.clone(),
            issuer: cfg.auth_issuer.clone(),
            leeway_ms: cfg.auth_leeway_ms,
            accepted: accepted.join(", "),
        })
    }

    /// Checks signature and claims of a compact JWS.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, now_secs())
    }

    fn verify_at(&self, token: &str, now: f64) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            invalid(format!(
                "the token is not a JWT with a supported alg ({e}); accepted: {}",
                self.accepted
            ))
        })?;
        // RFC 7515 §4.1.11: extensions listed as critical must be understood; none are here.
        if header.crit.is_some() {
            return Err(invalid(
                "the token names critical header extensions (\"crit\") this server does not understand",
            ));
        }
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            alg => self.public.as_ref().filter(|(a, _)| *a == alg).map(|(_, k)| k),
        }
        .ok_or_else(|| {
            invalid(format!(
                "token alg {:?} is not accepted; accepted: {}",
                header.alg, self.accepted
            ))
        })?;
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| invalid(format!("the token does not verify: {e}")))?;
        self.check_claims(&data.claims, now)
    }

    fn check_claims(&self, c: &Map<String, Value>, now: f64) -> Result<Principal, AuthError> {
        let leeway = self.leeway_ms as f64 / 1000.0;
        let sub = match c.get("sub") {
            Some(Value::String(s)) if valid_sub(s) => s,
            _ => {
                return Err(invalid(
                    "the token has no valid \"sub\" (1-256 bytes, no control characters)",
                ));
            }
        };
        let tenant = match c.get("tid") {
            None => None,
            Some(Value::String(t)) if valid_tenant(t) => Some(Arc::from(t.as_str())),
            Some(_) => {
                return Err(invalid("the token \"tid\" is not 1-64 characters of [A-Za-z0-9._:-]"));
            }
        };
        let exp = match c.get("exp") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            _ => return Err(invalid("the token has no numeric \"exp\"")),
        };
        if !exp.is_finite() {
            return Err(invalid("the token \"exp\" is not a number"));
        }
        if now >= exp + leeway {
            return Err(AuthError {
                code: "token_expired",
                message: "the token has expired".into(),
            });
        }
        match c.get("nbf") {
            None => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|nbf| now + leeway >= nbf) => {}
            Some(Value::Number(_)) => return Err(invalid("the token is not valid yet (\"nbf\")")),
            Some(_) => return Err(invalid("the token \"nbf\" is not a number")),
        }
        let aud_ok = match (c.get("aud"), &self.audience) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(Value::String(a)), want) => want.as_ref().is_none_or(|w| w == a),
            (Some(Value::Array(all)), want) => {
                all.iter().all(Value::is_string)
                    && want.as_ref().is_none_or(|w| all.iter().any(|a| a.as_str() == Some(w)))
            }
            (Some(_), _) => false,
        };
        if !aud_ok {
            return Err(invalid(match &self.audience {
                Some(w) => format!("the token audience is not {w:?}"),
                None => "the token \"aud\" is malformed".into(),
            }));
        }
        let iss_ok = match (c.get("iss"), &self.issuer) {
            (None, None) => true,
            (Some(Value::String(i)), want) => want.as_ref().is_none_or(|w| w == i),
            _ => false,
        };
        if !iss_ok {
            return Err(invalid(match &self.issuer {
                Some(w) => format!("the token issuer is not {w:?}"),
                None => "the token \"iss\" is malformed".into(),
            }));
        }
        let scopes = match c.get("scope") {
            None => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(invalid("the token \"scope\" is not a space-separated string")),
        };
        let has = |want: &str| scopes.split_ascii_whitespace().any(|s| s == want);
        Ok(Principal {
            user_id: Arc::from(sub.as_str()),
            exp,
            publish: has(wire::SCOPE_PUBLISH),
            admin: has(wire::SCOPE_ADMIN),
            tenant,
        })
    }
}

/// A user id as the protocol allows it: 1-256 bytes of printable characters (a control
/// character would reach logs, keys and stored rows).
pub fn valid_sub(sub: &str) -> bool {
    wire::api::valid_name(sub, 256)
}

/// A tenant id (`tid`): 1-64 characters of `[A-Za-z0-9._:-]`.
fn valid_tenant(tid: &str) -> bool {
    (1..=64).contains(&tid.len()) && wire::api::valid_device_id(tid)
}

fn public_key(
    pem: &str,
    pinned: Option<KeyAlgorithm>,
) -> Result<(Algorithm, DecodingKey), KeyError> {
    let err = |message: String| KeyError { setting: "GATEWAY_AUTH_PUBLIC_KEY_FILE", message };
    let rsa = || DecodingKey::from_rsa_pem(pem.as_bytes()).map(|k| (Algorithm::RS256, k));
    let ec = || DecodingKey::from_ec_pem(pem.as_bytes()).map(|k| (Algorithm::ES256, k));
    match pinned {
        Some(KeyAlgorithm::Rs256) => rsa().map_err(|e| err(format!("not an RSA public key: {e}"))),
        Some(KeyAlgorithm::Es256) => {
            ec().map_err(|e| err(format!("not an EC P-256 public key: {e}")))
        }
        None => rsa()
            .or_else(|_| ec())
            .map_err(|e| err(format!("neither an RSA nor an EC public key in PEM: {e}"))),
    }
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Signs HS256 tokens (the `--dev` sample tokens, and tests).
pub fn sign_hs256(secret: &str, claims: &wire::Claims) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes());
    // Encoding a plain struct with an HMAC key cannot fail.
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap_or_default()
}

#[cfg(test)]
mod tests;
