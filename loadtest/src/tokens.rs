//! Tokens for the simulated users and the producer: minted with an HS256 secret, or read from a
//! file of `sub token` lines.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wire::Claims;

use crate::scenario::TokenArgs;

pub enum Tokens {
    Minted { key: EncodingKey, ttl: u64, tenants: u32 },
    File(HashMap<String, String>),
}

/// The user id of simulated user `i`.
pub fn user_id(i: u32) -> String {
    format!("lu{i}")
}

impl Tokens {
    pub fn from_args(args: &TokenArgs, ttl: u64) -> anyhow::Result<Self> {
        match (&args.secret, &args.token_file) {
            (Some(s), None) => {
                let key = EncodingKey::from_secret(s.as_bytes());
                Ok(Tokens::Minted { key, ttl, tenants: args.tenants })
            }
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)?;
                let map = text
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    .filter_map(|l| l.split_once(char::is_whitespace))
                    .map(|(sub, tok)| (sub.to_owned(), tok.trim().to_owned()))
                    .collect();
                Ok(Tokens::File(map))
            }
            _ => anyhow::bail!("give exactly one of --secret or --token-file"),
        }
    }

    /// Tokens minted with an HS256 `secret`, valid `ttl` seconds, without `tid`.
    pub fn minted(secret: &str, ttl: u64) -> Self {
        Tokens::Minted { key: EncodingKey::from_secret(secret.as_bytes()), ttl, tenants: 0 }
    }

    fn mint(&self, sub: &str, scope: Option<&str>, tenant: Option<u32>) -> anyhow::Result<String> {
        match self {
            Tokens::Minted { key, ttl, tenants } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                let mut c = Claims::new(sub, now, *ttl);
                c.scope = scope.map(str::to_owned);
                let mut c = serde_json::to_value(c)?;
                if let Some(i) = tenant.filter(|_| *tenants > 0) {
                    c["tid"] = format!("tenant-{}", i % tenants).into();
                }
                Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, key)?)
            }
            Tokens::File(map) => map
                .get(sub)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no token for {sub} in the token file")),
        }
    }

    pub fn user(&self, i: u32) -> anyhow::Result<String> {
        self.mint(&user_id(i), None, Some(i))
    }

    pub fn producer(&self) -> anyhow::Result<String> {
        self.mint("producer", Some("gateway.publish"), None)
    }
}
