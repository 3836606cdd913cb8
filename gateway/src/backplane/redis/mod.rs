//! Redis mode: every node shares the user logs, turn state, dedup keys and the outbox through
//! one Redis (single instance or cluster), and events cross nodes by pub/sub.
//!
//! Each change is one Lua script in the user's slot ([`scripts`]): the event gets its seq, is
//! logged and is published in the same step. A node subscribes to the users it holds endpoints
//! for ([`subs`]) and hands their events to its hub; an endpoint attaching registers for live
//! events first, then reads what it missed, and its feed skips what comes twice. A lost
//! subscription connection is followed by a resubscribe and a catch-up from each user's log.

mod conn;
mod idle;
mod keys;
mod outbox;
mod read;
mod resync;
mod scripts;
mod subs;

pub use conn::{Connections, RedisConn, connect};
pub use keys::Keys;
pub use outbox::RedisOutbox;
pub use scripts::Scripts;
pub use subs::Dispatcher;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use redis::ScriptInvocation;
use store_client::Persister;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::api::{CreateNotification, EventItem, NotificationAccepted, TurnCreated, TurnState};
use wire::{EventBody, TurnStatus};

use super::{Applied, Backplane, NewTurn, Snapshot, TurnError, Unavailable, chars, now_ms};
use crate::hub::{Attachment, Entry, Hub, Reservation, ResumeFrom};
use crate::ids;
use read::{LogRead, TurnFields};
use subs::Subscriptions;

/// How long a turn's index (id → user) lives; an ended, stored turn's is cut to the turn
/// retention.
const INDEX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a streaming turn lives after its last event (an abandoned turn goes).
const STREAMING_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a turn's user is remembered here without asking Redis.
const OWNER_CACHE: Duration = Duration::from_secs(300);
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
    pub dedup_window: Duration,
    /// The longest turn text kept (and stored).
    pub max_text: usize,
    /// A streaming turn with no event for this long is ended `failed` (`idle_timeout`).
    pub turn_idle: Duration,
}

pub struct RedisBackplane {
    conn: RedisConn,
    keys: Keys,
    scripts: Arc<Scripts>,
    hub: Arc<Hub>,
    subs: Arc<Subscriptions>,
    /// The subscription connection's push handler (knows when messages were lost).
    dispatcher: Dispatcher,
    outbox: Arc<RedisOutbox>,
    /// Woken when a turn ended, so it is stored at once.
    persister: Arc<Persister>,
    settings: RedisSettings,
    /// turn id → its user (immutable while the turn lives), to skip the index read.
    owners: DashMap<String, (Arc<str>, Instant)>,
    /// Unsubscribes under way, awaited on shutdown.
    tasks: TaskTracker,
    sweeps: AtomicU64,
}

/// Redis failed: the details are logged, the client gets a plain sentence.
fn unavailable(e: redis::RedisError) -> Unavailable {
    tracing::warn!(error = %e, "Redis call failed");
    Unavailable { code: "redis_unavailable", message: "Redis cannot be reached now".into() }
}

fn corrupt(e: String) -> Unavailable {
    tracing::error!(error = %e, "unexpected reply from Redis");
    Unavailable { code: "redis_unavailable", message: "Redis gave an unexpected reply".into() }
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
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
    pub fn outbox(&self, turn_retention: Duration, max_text: usize) -> RedisOutbox {
        let (conn, keys) = (self.conns.commands.clone(), self.keys.clone());
        RedisOutbox::new(conn, keys, self.scripts.clone(), turn_retention, max_text)
    }
}

impl RedisBackplane {
    pub fn new(
        link: RedisLink,
        hub: Arc<Hub>,
        outbox: Arc<RedisOutbox>,
        persister: Arc<Persister>,
        settings: RedisSettings,
    ) -> Self {
        let RedisLink { conns, dispatcher, keys, scripts } = link;
        RedisBackplane {
            subs: Arc::new(Subscriptions::new(conns.subscriptions, keys.clone())),
            conn: conns.commands,
            keys,
            scripts,
            hub,
            dispatcher,
            outbox,
            persister,
            settings,
            owners: DashMap::new(),
            tasks: TaskTracker::new(),
            sweeps: AtomicU64::new(0),
        }
    }

    /// Adds the arguments every appending script starts with (see [`scripts`]).
    fn prelude<'a>(&self, script: &'a redis::Script, user: &str) -> ScriptInvocation<'a> {
        let log = self.keys.log(user);
        let mut inv = script.key(log.log);
        inv.key(log.meta)
            .arg(self.conn.publish_command())
            .arg(format!("{:016x}", rand::random::<u64>()))
            .arg(format!("{}:{}", self.settings.keep, self.settings.max_log_bytes))
            .arg(self.settings.age.as_millis() as u64)
            .arg(log.channel);
        inv
    }

    /// Counts events this node appended (`gateway_events_published_total`; in embedded mode the
    /// hub counts them).
    fn published(&self, n: u64) {
        if n > 0 {
            self.hub.metrics().events_published.increment(n);
        }
    }

    /// The user of a turn: remembered, or from the turn index.
    async fn owner(&self, turn_id: &str) -> Result<Option<Arc<str>>, Unavailable> {
        if let Some(o) = self.owners.get(turn_id) {
            return Ok(Some(o.0.clone()));
        }
        let value: Option<String> = redis::cmd("GET")
            .arg(self.keys.turn_index(turn_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        let user: Option<Arc<str>> = value.and_then(|v| v.split('\n').next().map(Arc::from));
        Ok(user.inspect(|user| {
            self.owners.insert(turn_id.to_owned(), (user.clone(), Instant::now()));
        }))
    }

    async fn read_turn(
        &self,
        user: &str,
        turn_id: &str,
        owner: &str,
        what: &str,
    ) -> Result<Option<TurnFields>, Unavailable> {
        let raw = read::turn(&self.conn, &self.scripts, &self.keys, user, turn_id, owner, what)
            .await
            .map_err(unavailable)?;
        raw.map(TurnFields::parse).transpose().map_err(corrupt)
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

    /// Applies items to a turn of `user` (`owner` non-empty: only if the turn is theirs). An
    /// end is announced to the outbox first, so the ended turn is on its way to the store
    /// whatever happens after.
    async fn apply_items(
        &self,
        user: &str,
        turn_id: &str,
        owner: &str,
        items: Vec<EventItem>,
    ) -> Applied {
        let fail = |e: Unavailable| Applied { refused: Some(e.into()), ..Applied::default() };
        let ends = items.iter().any(|i| matches!(i, EventItem::End(_)));
        if ends && let Err(e) = self.outbox.add(turn_id, user).await {
            return fail(unavailable(e));
        }
        let t = self.keys.turn(user, turn_id);
        let mut inv = self.prelude(&self.scripts.apply, user);
        inv.key(t.state)
            .key(t.text)
            .key(t.traces)
            .arg(owner)
            .arg(STREAMING_TTL.as_millis() as u64)
            .arg(self.settings.max_text)
            .arg(json(&turn_id));
        for item in items {
            match item {
                EventItem::Delta(text) => {
                    let n = chars(&text);
                    inv.arg("d").arg(json(&text)).arg(text).arg(n);
                }
                EventItem::Trace(trace) => {
                    let record = serde_json::json!({"kind": trace.kind, "data": trace.data});
                    let body = EventBody::TurnTrace {
                        turn_id: turn_id.to_owned(),
                        kind: trace.kind,
                        data: trace.data,
                    };
                    inv.arg("t").arg(json(&body)).arg(record.to_string()).arg("");
                }
                EventItem::End(e) => {
                    let error = (e.status == TurnStatus::Failed)
                        .then(|| e.error.unwrap_or(serde_json::Value::Null));
                    let body =
                        EventBody::TurnEnd { turn_id: turn_id.to_owned(), status: e.status, error };
                    inv.arg("e").arg(json(&body)).arg(e.status.as_str()).arg("");
                }
            }
        }
        let reply: Result<(u64, u64, String, String), _> =
            inv.invoke_async(&mut self.conn.clone()).await;
        let (accepted, last, outcome, status) = match reply {
            Ok(r) => r,
            Err(e) => return fail(unavailable(e)),
        };
        if ends {
            self.persister.wake();
        }
        self.published(accepted);
        let refused = match outcome.as_str() {
            "ok" => None,
            "not_found" => {
                self.owners.remove(turn_id);
                Some(TurnError::NotFound(turn_id.to_owned()))
            }
            _ => Some(match read::status(&status) {
                Ok(status) => TurnError::Ended { turn_id: turn_id.to_owned(), status },
                Err(e) => corrupt(e).into(),
            }),
        };
        Applied { accepted, last_seq: (accepted > 0).then_some(last), refused }
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn mode(&self) -> &'static str {
        "redis"
    }

    async fn create_turn(&self, req: NewTurn) -> Result<(TurnCreated, bool), TurnError> {
        let (user, turn_id) = (req.user_id.as_str(), req.turn_id.clone());
        let prev: Option<String> = redis::cmd("SET")
            .arg(self.keys.turn_index(&turn_id))
            .arg(format!("{user}\n{}", req.conversation_id))
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(INDEX_TTL.as_millis() as u64)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if prev.as_deref().is_some_and(|p| p.split('\n').next() != Some(user)) {
            return Err(TurnError::Conflict(turn_id));
        }
        let created_ms = now_ms();
        let meta = req.meta.as_ref().map(json).unwrap_or_default();
        let start = EventBody::TurnStart {
            turn_id: turn_id.clone(),
            conversation_id: req.conversation_id.clone(),
            created_at: ids::rfc3339_ms(created_ms),
            meta: req.meta,
        };
        let mut inv = self.prelude(&self.scripts.create_turn, user);
        inv.key(self.keys.turn(user, &turn_id).state)
            .arg(user)
            .arg(&req.conversation_id)
            .arg(STREAMING_TTL.as_millis() as u64)
            .arg(created_ms)
            .arg(meta)
            .arg(json(&start));
        let (outcome, seq): (i64, u64) =
            inv.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        if outcome < 0 {
            return Err(TurnError::Conflict(turn_id));
        }
        self.published(u64::from(outcome == 1));
        self.owners.insert(turn_id.clone(), (Arc::from(user), Instant::now()));
        if outcome == 1 {
            self.watch_idle(&turn_id, created_ms).await;
        }
        Ok((TurnCreated { turn_id, seq }, outcome == 1))
    }

    async fn apply(&self, turn_id: &str, items: Vec<EventItem>) -> Applied {
        let user = match self.owner(turn_id).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Applied {
                    refused: Some(TurnError::NotFound(turn_id.to_owned())),
                    ..Applied::default()
                };
            }
            Err(e) => return Applied { refused: Some(e.into()), ..Applied::default() },
        };
        // A producer ends a turn as completed or failed; what precedes a bad end is applied.
        let bad_end = items.iter().position(|i| {
            matches!(i, EventItem::End(e) if !matches!(e.status, TurnStatus::Completed | TurnStatus::Failed))
        });
        let mut items = items;
        if let Some(at) = bad_end {
            items.truncate(at);
        }
        let mut applied = if items.is_empty() {
            Applied::default()
        } else {
            self.apply_items(&user, turn_id, "", items).await
        };
        if bad_end.is_some() && applied.refused.is_none() {
            let msg = "\"end\".\"status\" must be \"completed\" or \"failed\"";
            applied.refused = Some(TurnError::Invalid(msg.into()));
        }
        applied
    }

    async fn cancel(&self, user: &str, turn_id: &str) -> Result<u64, TurnError> {
        // Read first although the script checks the owner too: an end writes an outbox entry
        // before it runs, and none must be written for a turn that is not the caller's.
        let t = self
            .read_turn(user, turn_id, user, "state")
            .await?
            .ok_or_else(|| TurnError::NotFound(turn_id.to_owned()))?;
        if t.status != TurnStatus::Streaming {
            return Err(TurnError::Ended { turn_id: turn_id.to_owned(), status: t.status });
        }
        let end = EventItem::End(wire::api::EndItem { status: TurnStatus::Cancelled, error: None });
        let applied = self.apply_items(user, turn_id, user, vec![end]).await;
        match (applied.refused, applied.last_seq) {
            (Some(e), _) => Err(e),
            (None, Some(seq)) => Ok(seq),
            (None, None) => Err(TurnError::NotFound(turn_id.to_owned())),
        }
    }

    async fn snapshot(&self, user: &str, turn_id: &str) -> Result<Snapshot, TurnError> {
        let t = self
            .read_turn(user, turn_id, user, "snapshot")
            .await?
            .ok_or_else(|| TurnError::NotFound(turn_id.to_owned()))?;
        Ok(Snapshot {
            turn_id: turn_id.to_owned(),
            conversation_id: t.conversation_id,
            status: t.status,
            text: t.text,
            next_index: t.next_index,
            as_of_seq: t.head,
        })
    }

    async fn turn(&self, turn_id: &str) -> Result<TurnState, TurnError> {
        let not_found = || TurnError::NotFound(turn_id.to_owned());
        let user = self.owner(turn_id).await?.ok_or_else(not_found)?;
        let t = self.read_turn(&user, turn_id, "", "state").await?.ok_or_else(not_found)?;
        Ok(TurnState {
            turn_id: turn_id.to_owned(),
            user_id: t.user_id,
            conversation_id: t.conversation_id,
            status: t.status,
            next_index: t.next_index,
            text_len: t.chars,
        })
    }

    async fn notify(
        &self,
        req: CreateNotification,
    ) -> Result<(NotificationAccepted, bool), Unavailable> {
        let user = req.user_id.clone();
        let id = ids::fresh("n");
        let window = match req.dedup_key {
            Some(_) => self.settings.dedup_window.as_millis() as u64,
            None => 0,
        };
        let dedup = self.keys.dedup(&user, req.dedup_key.as_deref().unwrap_or("-"));
        let body = super::notification(&id, req);
        let mut inv = self.prelude(&self.scripts.notify, &user);
        inv.key(dedup).arg(window).arg(&id).arg(json(&body));
        let (fresh, answer): (i64, String) =
            inv.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        let (id, seq) = answer.rsplit_once('|').ok_or_else(|| corrupt(answer.clone()))?;
        let seq = seq.parse().map_err(|_| corrupt(answer.clone()))?;
        self.published(u64::from(fresh == 1));
        Ok((NotificationAccepted { id: id.to_owned(), seq }, fresh == 1))
    }

    async fn mark_read(&self, user: &str, id: &str) -> Result<u64, Unavailable> {
        let body = EventBody::NotificationRead { id: id.to_owned() };
        let mut inv = self.prelude(&self.scripts.publish, user);
        inv.arg(json(&body));
        let seq = inv.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        self.published(1);
        Ok(seq)
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
        self.end_idle_turns().await;
        let retired = self.hub.sweep();
        self.subs.prune();
        self.owners.retain(|_, (_, at)| at.elapsed() < OWNER_CACHE);
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
