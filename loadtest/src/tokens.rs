//! Tokens for the simulated users and the producer: minted with an HS256 secret, or read from a
//! file of `sub token` lines.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use wire::Claims;

use crate::scenario::TokenArgs;

pub enum Tokens {
    Minted { key: EncodingKey, ttl: u64 },
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
                Ok(Tokens::Minted { key: EncodingKey::from_secret(s.as_bytes()), ttl })
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

    fn mint(&self, sub: &str, scope: Option<&str>) -> anyhow::Result<String> {
        match self {
            Tokens::Minted { key, ttl } => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                let mut c = Claims::new(sub, now, *ttl);
                c.scope = scope.map(str::to_owned);
                Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &c, key)?)
            }
            Tokens::File(map) => map
                .get(sub)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no token for {sub} in the token file")),
        }
    }

    pub fn user(&self, i: u32) -> anyhow::Result<String> {
        self.mint(&user_id(i), None)
    }

    pub fn producer(&self) -> anyhow::Result<String> {
        self.mint("producer", Some("gateway.publish"))
    }
}
