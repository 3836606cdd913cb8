//! Cross-node fan-out: a node subscribes to the channel of each user it holds endpoints for
//! (sharded pub/sub on a cluster), and only those; the last endpoint of a user leaving
//! unsubscribes. Messages go from the subscription connection straight into the hub, in the
//! order Redis sent them, which is seq order: one delivery per node, whatever the number of the
//! user's endpoints on it.
//!
//! A lost subscription connection loses messages. The [`Dispatcher`] notes the disconnection;
//! the backplane then subscribes again and catches every held user up from their log.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dashmap::DashMap;
use futures_util::StreamExt;
use redis::aio::AsyncPushSender;
use redis::{PushInfo, PushKind, RedisResult, Value};
use tokio::sync::{Mutex, Notify};

use super::conn::RedisConn;
use super::keys::Keys;
use crate::hub::{Entry, Hub, kind_of};

/// Subscriptions restored at once after a lost connection.
const RENEW_IN_FLIGHT: usize = 64;

/// The subscription connection's push handler.
#[derive(Clone)]
pub struct Dispatcher(Arc<DispatchState>);

pub struct DispatchState {
    hub: Arc<Hub>,
    keys: Keys,
    /// Set when the subscription connection dropped: messages may have been lost since.
    lost: AtomicBool,
    /// Wakes the backplane's resync task.
    pub wake: Notify,
}

impl Dispatcher {
    pub fn new(hub: Arc<Hub>, keys: Keys) -> Self {
        Dispatcher(Arc::new(DispatchState {
            hub,
            keys,
            lost: AtomicBool::new(false),
            wake: Notify::new(),
        }))
    }

    pub fn state(&self) -> &DispatchState {
        &self.0
    }

    fn deliver(&self, data: &[Value]) {
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.first(), data.get(1))
        else {
            return;
        };
        let (Ok(channel), Ok(payload)) =
            (std::str::from_utf8(channel), std::str::from_utf8(payload))
        else {
            return;
        };
        let Some(user) = self.0.keys.user_of_channel(channel) else { return };
        match parse_message(payload) {
            Some((epoch, seq, kind, json)) => self.0.hub.deliver(&user, epoch, seq, |epoch| {
                Entry::with_json(epoch, seq, kind, json.to_owned())
            }),
            None => tracing::warn!(%channel, "unreadable message on a user channel"),
        }
    }
}

impl DispatchState {
    /// Whether messages may have been lost since the last resync; clears the mark.
    pub fn take_lost(&self) -> bool {
        self.lost.swap(false, Ordering::AcqRel)
    }

    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl AsyncPushSender for Dispatcher {
    fn send(&self, info: PushInfo) -> Result<(), redis::aio::SendError> {
        match info.kind {
            PushKind::Message | PushKind::SMessage => self.deliver(&info.data),
            PushKind::Disconnection => {
                tracing::warn!("Redis subscription connection lost; will resubscribe and catch up");
                self.0.mark_lost();
            }
            _ => {}
        }
        Ok(())
    }
}

/// `<epoch>\n<seq>\n<json>` → its parts, the event's type found in the JSON.
pub fn parse_message(payload: &str) -> Option<(&str, u64, &'static str, &str)> {
    let (epoch, rest) = payload.split_once('\n')?;
    let (seq, json) = rest.split_once('\n')?;
    let seq = seq.parse().ok()?;
    Some((epoch, seq, kind_of(json)?, json))
}

/// Which users' channels this node is subscribed to, and how many endpoints hold each.
pub struct Subscriptions {
    conn: RedisConn,
    keys: Keys,
    /// user → endpoints holding the subscription. The async lock orders subscribe and
    /// unsubscribe of one user: a leaving endpoint never unsubscribes a joining one.
    users: DashMap<Arc<str>, Arc<Mutex<usize>>>,
}

impl Subscriptions {
    pub fn new(conn: RedisConn, keys: Keys) -> Self {
        Subscriptions { conn, keys, users: DashMap::new() }
    }

    /// One more endpoint of `user` here: subscribed (confirmed by Redis) when this returns.
    pub async fn hold(&self, user: &str) -> RedisResult<()> {
        let slot = self.users.entry(Arc::from(user)).or_default().clone();
        let mut held = slot.lock().await;
        if *held == 0 {
            self.conn.clone().subscribe(&self.keys.log(user).channel).await?;
        }
        *held += 1;
        Ok(())
    }

    /// One endpoint of `user` fewer; the last one unsubscribes.
    pub async fn release(&self, user: &str) {
        let Some(slot) = self.users.get(user).map(|s| s.clone()) else { return };
        let mut held = slot.lock().await;
        *held = held.saturating_sub(1);
        if *held == 0
            && let Err(e) = self.conn.clone().unsubscribe(&self.keys.log(user).channel).await
        {
            // Still subscribed: messages for a user with no endpoint here are dropped by the hub.
            tracing::warn!(error = %e, %user, "unsubscribe failed");
        }
    }

    /// Subscribes every held channel again (after the connection was lost), many at once on
    /// the one connection.
    pub async fn renew(&self) -> RedisResult<()> {
        let held: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|e| e.value().try_lock().map_or(true, |n| *n > 0))
            .map(|e| e.key().clone())
            .collect();
        let mut subscribing = futures_util::stream::iter(held)
            .map(|user| {
                let mut conn = self.conn.clone();
                async move { conn.subscribe(&self.keys.log(&user).channel).await }
            })
            .buffer_unordered(RENEW_IN_FLIGHT);
        while let Some(r) = subscribing.next().await {
            r?;
        }
        Ok(())
    }

    /// Forgets users no endpoint holds (and nobody is subscribing right now).
    pub fn prune(&self) {
        self.users.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || slot.try_lock().map_or(true, |n| *n > 0)
        });
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_kinds_parse() {
        let m = "e1\n42\n{\"seq\":42,\"type\":\"turn.delta\",\"turn_id\":\"t\",\"index\":0,\"text\":\"a\\n\\\"type\\\":\\\"x\"}";
        let (epoch, seq, kind, json) = parse_message(m).unwrap();
        assert_eq!((epoch, seq, kind), ("e1", 42, "turn.delta"));
        assert!(json.starts_with("{\"seq\":42,"));
        assert!(parse_message("e1\nx\n{}").is_none());
        // Any type passes: a new event family needs no list here.
        assert!(parse_message("e1\n1\n{\"seq\":1,\"type\":\"task.status\"}").is_some());
    }
}
