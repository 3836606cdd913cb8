//! Presence in Redis, shared by every node.
//!
//! Per user, three keys in one hash slot (the `{user}` tag), so every script touches one slot
//! and works on a Redis Cluster:
//! - `<ns>:{<user>}:pz`: sorted set, conn_id → expiry in ms on *Redis's* clock (nodes' clocks
//!   never have to agree);
//! - `<ns>:{<user>}:pi`: hash, conn_id → `<order>|<EndpointInfo JSON>`;
//! - `<ns>:{<user>}:pn`: the registration counter that gives `<order>`.
//!
//! All three expire twice the TTL after the last write, so an idle user leaves nothing behind.
//! A refresh only extends entries that are still live: an endpoint whose node was silent past
//! the TTL stays gone even if a late refresh arrives.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::Script;
use redis::aio::{ConnectionLike, ConnectionManager};

use crate::{EndpointInfo, EndpointKey, PresenceError, PresenceRegistry};

const REGISTER: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[3])
local n = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], ARGV[1], n .. '|' .. ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 2) end
return n
";

const REFRESH: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if #missing < #ARGV - 1 then for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl * 2) end end
return missing
";

const UNREGISTER: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
";

const LIST: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(live))
";

/// How many per-user refresh scripts are in flight at once during a beat.
const REFRESH_IN_FLIGHT: usize = 256;

/// Presence kept in Redis, over any connection: a single instance's [`ConnectionManager`], or
/// a cluster connection (every script touches one user's slot).
#[derive(Clone)]
pub struct RedisPresence<C = ConnectionManager> {
    /// Multiplexed and reconnecting; every call has a response timeout.
    conn: C,
    /// Key prefix: lets deployments (and tests) share one Redis.
    ns: Arc<str>,
    ttl: Duration,
    scripts: Arc<Scripts>,
}

struct Scripts {
    register: Script,
    refresh: Script,
    unregister: Script,
    list: Script,
}

fn unavailable(e: redis::RedisError) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

impl RedisPresence {
    /// Connects (with timeouts and reconnection) to `url`.
    pub async fn connect(url: &str, ns: &str, ttl: Duration) -> Result<Self, PresenceError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        Ok(Self::with_connection(conn, ns, ttl))
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> RedisPresence<C> {
    /// Uses an existing connection (the gateway shares its own; tests give each registry its
    /// own namespace).
    pub fn with_connection(conn: C, ns: &str, ttl: Duration) -> Self {
        RedisPresence {
            conn,
            ns: Arc::from(ns),
            ttl,
            scripts: Arc::new(Scripts {
                register: Script::new(REGISTER),
                refresh: Script::new(REFRESH),
                unregister: Script::new(UNREGISTER),
                list: Script::new(LIST),
            }),
        }
    }

    /// Loads the scripts into Redis (every master of a cluster), so a burst of connections at
    /// start-up does not each fail with NOSCRIPT first.
    pub async fn load_scripts(&self) -> Result<(), PresenceError> {
        let s = &self.scripts;
        for script in [&s.register, &s.refresh, &s.unregister, &s.list] {
            script
                .prepare_invoke()
                .load_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// The same connection under another key prefix.
    pub fn renamed(self, ns: &str) -> Self {
        RedisPresence { ns: Arc::from(ns), ..self }
    }

    fn keys(&self, user: &str) -> [String; 3] {
        let base = format!("{}:{{{}}}", self.ns, slot_tag(user));
        [format!("{base}:pz"), format!("{base}:pi"), format!("{base}:pn")]
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Refreshes one user's endpoints; returns those no longer listed.
    async fn refresh_user(
        &self,
        user: String,
        conns: Vec<String>,
    ) -> Result<Vec<EndpointKey>, PresenceError> {
        let [z, i, n] = self.keys(&user);
        let mut inv = self.scripts.refresh.key(z);
        inv.key(i).key(n).arg(self.ttl_ms()).arg(conns);
        let mut conn = self.conn.clone();
        let missing: Vec<String> = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(missing
            .into_iter()
            .map(|conn_id| EndpointKey { user_id: user.clone(), conn_id })
            .collect())
    }
}

/// The hash tag of a user's keys: the user id itself when that is safe, else `#` and its hex.
///
/// A raw id must not hold a brace (it would end or empty the tag and scatter the user's keys
/// over slots), must not be empty (an empty tag hashes the whole key), and must not hold `#`:
/// raw tags never contain `#` and hex tags always start with it, which keeps the encoding
/// injective (`{x}` and `#7b787d` are two users, with two sets of keys). [`user_of_tag`] is
/// its inverse.
pub fn slot_tag(user: &str) -> std::borrow::Cow<'_, str> {
    if user.is_empty() || user.contains(['{', '}', '#']) {
        let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
        std::borrow::Cow::Owned(format!("#{hex}"))
    } else {
        std::borrow::Cow::Borrowed(user)
    }
}

/// The user a tag made by [`slot_tag`] names; `None` for a string `slot_tag` never makes.
pub fn user_of_tag(tag: &str) -> Option<std::borrow::Cow<'_, str>> {
    let Some(hex) = tag.strip_prefix('#') else {
        let raw = !tag.is_empty() && !tag.contains(['{', '}', '#']);
        return raw.then_some(std::borrow::Cow::Borrowed(tag));
    };
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect();
    let user = String::from_utf8(bytes?).ok()?;
    // Only the canonical form: a user that could have been written raw never is hex.
    (slot_tag(&user) == tag).then_some(std::borrow::Cow::Owned(user))
}

#[async_trait]
impl<C: ConnectionLike + Clone + Send + Sync + 'static> PresenceRegistry for RedisPresence<C> {
    async fn register(
        &self,
        user_id: &str,
        endpoint: Arc<EndpointInfo>,
    ) -> Result<(), PresenceError> {
        let json =
            serde_json::to_string(&*endpoint).map_err(|e| PresenceError::Corrupt(e.to_string()))?;
        let [z, i, n] = self.keys(user_id);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .register
            .key(z)
            .key(i)
            .key(n)
            .arg(&endpoint.conn_id)
            .arg(json)
            .arg(self.ttl_ms())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn unregister(&self, user_id: &str, conn_id: &str) -> Result<(), PresenceError> {
        let [z, i, _] = self.keys(user_id);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .scripts
            .unregister
            .key(z)
            .key(i)
            .arg(conn_id)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// One script per user (all that user's endpoints), every one in flight at once on the
    /// multiplexed connection: a beat costs about one round trip, not one per endpoint. (Not one
    /// pipeline: on a cluster a pipeline must stay within one slot.)
    async fn refresh(&self, endpoints: &[EndpointKey]) -> Result<Vec<EndpointKey>, PresenceError> {
        let mut by_user: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for e in endpoints {
            by_user.entry(e.user_id.clone()).or_default().push(e.conn_id.clone());
        }
        let mut results = futures_util::stream::iter(by_user)
            .map(|(user, conns)| self.refresh_user(user, conns))
            .buffer_unordered(REFRESH_IN_FLIGHT);
        let mut missing = Vec::new();
        while let Some(r) = results.next().await {
            missing.extend(r?);
        }
        Ok(missing)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<EndpointInfo>, PresenceError> {
        let [z, i, _] = self.keys(user_id);
        let mut conn = self.conn.clone();
        let raw: Vec<Option<String>> =
            self.scripts.list.key(z).key(i).invoke_async(&mut conn).await.map_err(unavailable)?;
        let mut entries = Vec::with_capacity(raw.len());
        for value in raw.into_iter().flatten() {
            let (order, json) = value.split_once('|').ok_or_else(|| {
                PresenceError::Corrupt(format!("presence entry without order: {value:?}"))
            })?;
            let order: u64 = order
                .parse()
                .map_err(|_| PresenceError::Corrupt(format!("bad order in {value:?}")))?;
            let info: EndpointInfo =
                serde_json::from_str(json).map_err(|e| PresenceError::Corrupt(e.to_string()))?;
            entries.push((order, info));
        }
        entries.sort_by_key(|(order, _)| *order);
        Ok(entries.into_iter().map(|(_, info)| info).collect())
    }

    fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::{slot_tag, user_of_tag};
    use proptest::prelude::*;

    #[test]
    fn the_colliding_ids_of_the_adversarial_run_are_told_apart() {
        for (a, b) in [("{x}", "#7b787d"), ("A", "#41"), ("", "#")] {
            assert_ne!(slot_tag(a), slot_tag(b), "{a:?} and {b:?}");
        }
        assert_eq!(user_of_tag(&slot_tag("#team")).as_deref(), Some("#team"));
        assert_eq!(user_of_tag("#7b787d").as_deref(), Some("{x}"));
        assert_eq!(user_of_tag("#41"), None, "\"A\" is always written raw");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// A left inverse makes the encoding injective; the tag is a valid, non-empty hash tag.
        #[test]
        fn slot_tags_are_injective_and_stay_in_one_slot(user in any::<String>()) {
            let tag = slot_tag(&user);
            let braces = ['{', '}'];
            prop_assert!(!tag.is_empty() && !tag.contains(braces), "bad tag {:?}", tag);
            let back = user_of_tag(&tag);
            prop_assert_eq!(back.as_deref(), Some(user.as_str()));
        }

        #[test]
        fn any_string_decodes_to_at_most_the_user_that_encodes_to_it(tag in any::<String>()) {
            if let Some(user) = user_of_tag(&tag) {
                prop_assert_eq!(slot_tag(&user), tag.as_str());
            }
        }
    }
}
