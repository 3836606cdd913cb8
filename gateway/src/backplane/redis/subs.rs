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
use super::read;
use crate::hub::{Entry, Hub};

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
        let Some((epoch, items)) = payload.split_once('\n') else {
            return tracing::warn!(%channel, "unreadable message on a user channel");
        };
        self.0.hub.deliver(&user, epoch, |epoch| entries(epoch, items));
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

/// A message's items (`<ms>|<event JSON>`, one per line: JSON has no raw newline) as
/// entries of `epoch`; an unreadable item is logged and left out.
pub fn entries(epoch: &Arc<str>, items: &str) -> Vec<Entry> {
    let read = |item| {
        read::entry(epoch, item)
            .map_err(|e| tracing::warn!(error = %e, "unreadable event on a user channel"))
            .ok()
    };
    items.split('\n').filter_map(read).collect()
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
    fn a_message_carries_an_appends_events_in_order() {
        let epoch: Arc<str> = Arc::from("e1");
        let items = "1700000000000|{\"seq\":41,\"type\":\"turn.delta\",\"text\":\"a\\n\\\"type\\\":\\\"x\"}\n\
                     1700000000000|{\"seq\":42,\"type\":\"task.status\"}";
        let got = entries(&epoch, items);
        let seen: Vec<_> = got.iter().map(|e| (e.seq, e.kind)).collect();
        assert_eq!(seen, [(41, "turn.delta"), (42, "task.status")]);
        assert!(got[0].json.as_str().starts_with("{\"seq\":41,"));
        assert!(Arc::ptr_eq(&got[1].epoch, &epoch), "the log's epoch is shared, not copied");
        // An unreadable item is left out, the others kept.
        assert_eq!(entries(&epoch, "x\n1|{\"seq\":3,\"type\":\"a\"}").len(), 1);
    }
}
