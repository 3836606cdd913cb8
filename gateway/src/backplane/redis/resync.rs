//! Keeping a node in step with Redis: after its subscription connection was lost, subscribe
//! again and catch every endpoint up from the logs; and keep the logs of connected users from
//! expiring while they are idle.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{IN_FLIGHT, RedisBackplane, unavailable};
use crate::backplane::Unavailable;
use crate::hub::Entry;

impl RedisBackplane {
    /// Waits for the subscription connection to be lost, then resyncs (with backoff while Redis
    /// stays away), until `stop`.
    pub(super) async fn restore_lost_subscriptions(&self, stop: &CancellationToken) {
        let lost = self.dispatcher.state();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = lost.wake.notified() => {}
            }
            let mut delay = Duration::from_millis(100);
            while lost.take_lost() {
                if let Err(e) = self.resync().await {
                    tracing::warn!(error = %e, ?delay, "resync failed; retrying");
                    lost.mark_lost();
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// After the subscription connection was lost: subscribe every held user again, then
    /// hand each what it missed meanwhile (from its log), or close its endpoints so their
    /// clients resume when the log cannot tell (trimmed, or reset).
    pub(super) async fn resync(&self) -> Result<(), Unavailable> {
        self.subs.renew().await.map_err(unavailable)?;
        let seen = self.hub.seen();
        tracing::info!(users = seen.len(), "resubscribed; catching up");
        let mut reads = futures_util::stream::iter(seen)
            .map(|(user, epoch, head)| async move {
                let read = self.read_log(&user, Some((&epoch, head)), 0).await;
                (user, read)
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some((user, read)) = reads.next().await {
            let read = read?;
            match read.events {
                Some(events) => self.hub.deliver(&user, &read.epoch, |epoch| {
                    let copy = |e: &Arc<Entry>| {
                        Entry::with_json(epoch.clone(), e.seq, e.kind, e.json.as_str().to_owned())
                    };
                    events.iter().map(copy).collect()
                }),
                None => self.hub.close_user(&user, wire::close::SLOW_CONSUMER),
            }
        }
        Ok(())
    }

    /// Keeps the logs of users connected here from expiring while they are idle (pushing their
    /// expiry back as far as an append would: twice the age).
    pub(super) async fn keep_alive(&self) {
        let age = 2 * self.settings.age.as_millis() as u64;
        let users = self.hub.seen();
        let mut touches = futures_util::stream::iter(users)
            .map(|(user, _, _)| async move {
                let log = self.keys.log(&user);
                let mut conn = self.conn.clone();
                let r: redis::RedisResult<i64> = self
                    .scripts
                    .touch
                    .key(log.log)
                    .key(log.meta)
                    .arg(age)
                    .invoke_async(&mut conn)
                    .await;
                r
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(r) = touches.next().await {
            if let Err(e) = r {
                return tracing::warn!(error = %e, "keeping user logs alive failed");
            }
        }
    }
}
