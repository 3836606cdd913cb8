//! Redis mode: every node shares the user logs, turn state, dedup keys and the outbox through
//! one Redis (single instance or cluster), and events cross nodes by pub/sub.
//!
//! Each change is one atomic step of the generic append script in the user's slot
//! ([`scripts`]): the condition is checked, the record changed, the events get their seqs, are
//! logged and are published (as one message) in the same step; the appends waiting while a
//! call is under way go together in the next call ([`batch`]). A node subscribes to the users it holds endpoints
//! for ([`subs`]) and hands their events to its hub; an endpoint attaching registers for live
//! events first, then reads what it missed, and its feed skips what comes twice. A lost
//! subscription connection is followed by a resubscribe and a catch-up from each user's log.

mod batch;
mod conn;
mod keys;
mod outbox;
mod read;
mod resync;
mod scripts;
mod subs;

pub use conn::{Connections, RedisConn, connect};
pub use keys::Keys;
pub use outbox::{Assembled, Finished, RedisOutbox};
pub use scripts::Scripts;
pub use subs::Dispatcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::record::{Append, Blobs, Keep, Outcome, Read};
use super::{Backplane, Unavailable};
use crate::hub::{Attachment, Entry, Hub, Reservation, ResumeFrom};
use batch::Appender;
use read::LogRead;
use subs::Subscriptions;

/// How many per-user scripts a catch-up or keep-alive runs at once.
const IN_FLIGHT: usize = 64;

/// The settings the Redis backplane takes.
pub struct RedisSettings {
    /// Events kept per user log (`GATEWAY_LOG_RETENTION`).
    pub keep: usize,
    /// Bytes kept per user log (`GATEWAY_LOG_RETENTION_BYTES`), the entries as Redis holds them.
    pub max_log_bytes: usize,
    /// How long an event is kept, and an idle log lives (`GATEWAY_LOG_RETENTION_MS`).
    pub age: Duration,
    /// How long a batch of appends may wait for more (`GATEWAY_REDIS_APPEND_LINGER_US`).
    pub linger: Duration,
}

pub struct RedisBackplane {
    conn: RedisConn,
    keys: Keys,
    scripts: Arc<Scripts>,
    hub: Arc<Hub>,
    /// Appends go through it, in batches.
    appender: Appender,
    subs: Arc<Subscriptions>,
    /// The subscription connection's push handler (knows when messages were lost).
    dispatcher: Dispatcher,
    settings: RedisSettings,
    /// Unsubscribes under way, awaited on shutdown.
    tasks: TaskTracker,
    sweeps: AtomicU64,
}

/// Redis failed: the details are logged, the client gets a plain sentence.
pub(super) fn unavailable(e: redis::RedisError) -> Unavailable {
    tracing::warn!(error = %e, "Redis call failed");
    Unavailable { code: "redis_unavailable", message: "Redis cannot be reached now".into() }
}

pub(super) fn corrupt(e: String) -> Unavailable {
    tracing::error!(error = %e, "unexpected reply from Redis");
    Unavailable { code: "redis_unavailable", message: "Redis gave an unexpected reply".into() }
}

/// A node's link to Redis: its connections, the handler of its subscription connection, its
/// key names and the scripts.
pub struct RedisLink {
    pub conns: Connections,
    pub dispatcher: Dispatcher,
    pub keys: Keys,
    pub scripts: Arc<Scripts>,
}

impl RedisLink {
    /// Connects to `url` (single instance or cluster); subscribed events go to `hub`.
    pub async fn connect(url: &str, prefix: &str, hub: Arc<Hub>) -> redis::RedisResult<Self> {
        let keys = Keys::new(prefix);
        let dispatcher = Dispatcher::new(hub, keys.clone());
        let conns = connect(url, dispatcher.clone()).await?;
        let scripts = Arc::new(Scripts::new());
        scripts.load(&mut conns.commands.clone()).await?;
        Ok(RedisLink { conns, dispatcher, keys, scripts })
    }

    /// The outbox of finished turns, in this Redis.
    pub fn outbox(&self) -> RedisOutbox {
        RedisOutbox::new(self.conns.commands.clone(), self.keys.clone(), self.scripts.clone())
    }
}

impl RedisBackplane {
    pub fn new(link: RedisLink, hub: Arc<Hub>, settings: RedisSettings) -> Self {
        let RedisLink { conns, dispatcher, keys, scripts } = link;
        let appender = Appender::start(
            conns.commands.clone(),
            keys.clone(),
            scripts.clone(),
            &settings,
            hub.shared_metrics(),
        );
        RedisBackplane {
            appender,
            subs: Arc::new(Subscriptions::new(conns.subscriptions, keys.clone())),
            conn: conns.commands,
            keys,
            scripts,
            hub,
            dispatcher,
            settings,
            tasks: TaskTracker::new(),
            sweeps: AtomicU64::new(0),
        }
    }

    /// Counts events this node appended (`gateway_events_published_total`; in embedded mode the
    /// hub counts them).
    fn published(&self, n: u64) {
        if n > 0 {
            self.hub.metrics().events_published.increment(n);
        }
    }

    /// The log's epoch and head, with the events `after < seq <= upto` (0: the head) of
    /// `want`'s epoch when it holds them all.
    async fn read_log(
        &self,
        user: &str,
        want: Option<(&str, u64)>,
        upto: u64,
    ) -> Result<LogRead, Unavailable> {
        let log = self.keys.log(user);
        let raw: redis::Value = self
            .scripts
            .read_log
            .key(log.log)
            .key(log.meta)
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(self.settings.age.as_millis() as u64)
            .arg(want.map_or("", |w| w.0))
            .arg(want.map_or(0, |w| w.1))
            .arg(upto)
            .arg(self.settings.keep)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        LogRead::parse(raw).map_err(corrupt)
    }

    async fn query<T: redis::FromRedisValue + Send>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        cmd.query_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}

pub(super) fn keep_arg(keep: Keep) -> String {
    match keep {
        Keep::Unchanged => String::new(),
        Keep::Forever => "0".into(),
        Keep::For(d) => d.as_millis().max(1).to_string(),
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn mode(&self) -> &'static str {
        "redis"
    }

    async fn append_if(&self, a: Append) -> Result<Outcome, Unavailable> {
        let outcome = self.appender.append(a).await?;
        if let Outcome::Appended { first, last, .. } = outcome
            && last > 0
        {
            self.published(last - first + 1);
        }
        Ok(outcome)
    }

    async fn read(
        &self,
        user: &str,
        record: &str,
        blobs: Blobs,
    ) -> Result<Option<Read>, Unavailable> {
        let r = self.keys.record(user, record);
        let mut inv = self.scripts.read_record.key(self.keys.log(user).meta);
        inv.key(r.record).key(r.text).key(r.items);
        inv.arg(if blobs.text { "1" } else { "0" }).arg(if blobs.items { "1" } else { "0" });
        let raw: redis::Value =
            inv.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        read::record(raw).map_err(corrupt)
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, Unavailable> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.claim(key)).arg(value).arg("NX").arg("GET");
        cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        self.query(&cmd).await
    }

    async fn lookup(&self, key: &str) -> Result<Option<String>, Unavailable> {
        self.conn.clone().get(self.keys.claim(key)).await.map_err(unavailable)
    }

    async fn watch(&self, set: &str, member: &str, at_ms: i64) -> Result<(), Unavailable> {
        let _: i64 = self
            .conn
            .clone()
            .zadd(self.keys.timers(set), member, at_ms)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn due(&self, set: &str, at_ms: i64, max: usize) -> Result<Vec<String>, Unavailable> {
        let mut conn = self.conn.clone();
        let max = max as isize;
        conn.zrangebyscore_limit(self.keys.timers(set), "-inf", at_ms, 0, max)
            .await
            .map_err(unavailable)
    }

    async fn unwatch(&self, set: &str, member: &str) -> Result<(), Unavailable> {
        let _: i64 =
            self.conn.clone().zrem(self.keys.timers(set), member).await.map_err(unavailable)?;
        Ok(())
    }

    async fn keep(&self, user: &str, record: &str, keep: Keep) -> Result<(), Unavailable> {
        let r = self.keys.record(user, record);
        let arg = match keep {
            Keep::Unchanged => return Ok(()),
            other => keep_arg(other),
        };
        let mut inv = self.scripts.keep.key(r.record);
        inv.key(r.text).key(r.items).arg(arg);
        let _: i64 = inv.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn attach(
        &self,
        reservation: Reservation,
        resume: Option<&ResumeFrom>,
    ) -> Result<Attachment, Unavailable> {
        // Live first (subscribed and registered), then what was missed: nothing falls between.
        let (id, user, outbox) = self.hub.attach_live(reservation);
        let read = match self.subs.hold(&user).await {
            Ok(()) => self.read_log(&user, resume.map(|r| (r.epoch.as_str(), r.after)), 0).await,
            Err(e) => {
                self.hub.detach(&user, id);
                return Err(unavailable(e));
            }
        };
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                self.detach(&user, id);
                return Err(e);
            }
        };
        self.hub.observe(&user, &read.epoch, read.head);
        let resumed = resume.is_some() && read.events.is_some();
        if resume.is_some() {
            self.hub.metrics().resume(resumed);
        }
        Ok(Attachment {
            id,
            user,
            epoch: read.epoch,
            head: read.head,
            resumed,
            replay: read.events.filter(|_| resume.is_some()).unwrap_or_default(),
            outbox,
        })
    }

    fn detach(&self, user: &str, endpoint: u64) {
        if self.hub.detach(user, endpoint) {
            let (subs, user) = (self.subs.clone(), user.to_owned());
            self.tasks.spawn(async move { subs.release(&user).await });
        }
    }

    async fn missed(
        &self,
        user: &str,
        epoch: &str,
        after: u64,
        upto: u64,
    ) -> Result<Option<Vec<Arc<Entry>>>, Unavailable> {
        // The node-local cache first: an endpoint behind a burst reads it there, without a
        // round trip; older events, or a cache that lost the thread, come from Redis.
        if let Some(events) = self.hub.retained(user, epoch, after, upto)
            && !events.is_empty()
        {
            return Ok(Some(events));
        }
        let read = self.read_log(user, Some((epoch, after)), upto).await?;
        Ok(read.events.filter(|_| *read.epoch == *epoch))
    }

    async fn ready(&self) -> Result<(), Unavailable> {
        let ping = redis::cmd("PING");
        let cmd: redis::RedisResult<String> = ping.query_async(&mut self.conn.clone()).await;
        cmd.map_err(unavailable)?;
        if self.dispatcher.state().is_lost() {
            return Err(Unavailable {
                code: "redis_unavailable",
                message: "the Redis subscription connection is being restored".into(),
            });
        }
        Ok(())
    }

    async fn sweep(&self) {
        let retired = self.hub.sweep();
        self.subs.prune();
        // An idle log would expire after `age`: keep those of connected users, four times per.
        let n = self.sweeps.fetch_add(1, Ordering::Relaxed);
        let every = (self.settings.age.as_secs() / 4 / 5).max(1);
        if n.is_multiple_of(every) {
            self.keep_alive().await;
        }
        tracing::debug!(retired, subscribed = self.subs.len(), "swept");
    }

    async fn run(&self, stop: CancellationToken) {
        self.restore_lost_subscriptions(&stop).await;
        self.tasks.close();
        let _ = tokio::time::timeout(conn::TIMEOUT, self.tasks.wait()).await;
    }
}
