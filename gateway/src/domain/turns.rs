//! The turn service: the rules of [`turn`](super::turn) run against the log, each change one
//! conditional append. A change decided on a record that moved meanwhile (another node's delta,
//! a device's cancel) is refused by the backend with the record as it is now, and decided
//! again: the rule, not the backend, settles every race.
//!
//! Each turn this node works on has a local entry: its owner and last known record (so a
//! producer's batch costs one round trip, not two) behind an async lock (so this node's
//! changes to one turn queue instead of racing).

mod housekeeping;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;
use wire::api::{EndItem, EventItem, TurnCreated};
use wire::{EventBody, TurnStatus};

use super::turn::{By, Plan, STREAMING_TTL, TurnRec, plan, record_name};
use super::{Applied, NewTurn, Snapshot, TurnError, TurnSink};
use crate::backplane::redis::Assembled;
use crate::backplane::{
    Append, Backplane, Blobs, Event, Expect, Keep, Outcome, Unavailable, now_ms,
};

/// How long a turn id → user claim lives.
const INDEX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The timer set of streaming turns, due when they would be idle.
pub const STREAMING: &str = "streaming";
/// How long a change is decided again after the record moved under it (another node's
/// producer of the same turn): a node that keeps losing gets through when the other pauses.
const RETRY_FOR: Duration = Duration::from_secs(5);
/// Local entries unused this long are forgotten.
const LOCAL_FOR: Duration = Duration::from_secs(300);

pub struct TurnsConfig {
    /// The longest turn text kept (and stored); longer is cut and flagged.
    pub max_text: usize,
    /// A streaming turn with no event for this long is ended `failed` (`idle_timeout`).
    pub turn_idle: Duration,
    /// How long a stored turn's state (and so its idempotency) is kept.
    pub turn_retention: Duration,
}

pub struct Turns {
    log: Arc<dyn Backplane>,
    sink: Arc<dyn TurnSink>,
    cfg: TurnsConfig,
    local: DashMap<String, Arc<Mutex<Local>>>,
    /// Where the time from a turn's start to its first delta is observed.
    first_delta: Option<Arc<crate::metrics::Buckets>>,
    /// The `traceparent` of the turns created here with one (traces exported), read without
    /// waiting for a turn's lock by every request that continues the turn.
    traces: DashMap<String, String>,
}

/// What this node knows of a turn.
#[derive(Default)]
struct Local {
    rec: Option<TurnRec>,
    used: Option<Instant>,
    /// `next_index` at the last checkpoint of its text (embedded mode).
    checkpointed: u64,
}

fn index_key(turn_id: &str) -> String {
    format!("turn:{turn_id}")
}

impl Turns {
    pub fn new(log: Arc<dyn Backplane>, sink: Arc<dyn TurnSink>, cfg: TurnsConfig) -> Self {
        Turns { log, sink, cfg, local: DashMap::new(), first_delta: None, traces: DashMap::new() }
    }

    /// Observes the time from each turn's start to its first delta in `h`.
    pub fn observe_first_delta(&mut self, h: Arc<crate::metrics::Buckets>) {
        self.first_delta = Some(h);
    }

    fn local(&self, turn_id: &str) -> Arc<Mutex<Local>> {
        if let Some(l) = self.local.get(turn_id) {
            return l.clone();
        }
        self.local.entry(turn_id.to_owned()).or_default().clone()
    }

    /// The user of a turn this node works on, if it knows it without a round trip.
    pub fn user_of(&self, turn_id: &str) -> Option<String> {
        let local = self.local.get(turn_id)?.clone();
        let l = local.try_lock().ok()?;
        l.rec.as_ref().map(|r| r.user_id.clone())
    }

    /// The `traceparent` kept on a turn this node works on, if it knows it without a round trip.
    pub fn trace_of(&self, turn_id: &str) -> Option<String> {
        if let Some(tp) = self.traces.get(turn_id) {
            return Some(tp.clone());
        }
        let local = self.local.get(turn_id)?.clone();
        let l = local.try_lock().ok()?;
        l.rec.as_ref().and_then(|r| r.trace.clone())
    }

    /// The user whose turn this is, from the claim made when it was created.
    async fn owner(&self, turn_id: &str) -> Result<Option<String>, Unavailable> {
        let v = self.log.lookup(&index_key(turn_id)).await?;
        Ok(v.and_then(|v| v.split('\n').next().map(str::to_owned)))
    }

    /// The turn's record, taken from the local entry (the caller puts the next one back) or
    /// read from the log (`user`: only if theirs). Taken, not cloned: this runs per delta.
    async fn current(
        &self,
        l: &mut Local,
        turn_id: &str,
        user: Option<&str>,
    ) -> Result<TurnRec, TurnError> {
        let not_found = || TurnError::NotFound(turn_id.to_owned());
        if let Some(rec) = l.rec.take_if(|r| user.is_none_or(|u| u == r.user_id)) {
            return Ok(rec);
        }
        let user = match user {
            Some(u) => u.to_owned(),
            None => self.owner(turn_id).await?.ok_or_else(not_found)?,
        };
        let read = self.log.read(&user, &record_name(turn_id), Blobs::default()).await?;
        Ok(TurnRec::parse(&read.ok_or_else(not_found)?.record)?)
    }

    /// Starts a turn and publishes its `turn.start`; the same turn again (same user and
    /// conversation) is answered with the first (`false`), another user's is a `Conflict`.
    pub async fn create(&self, req: NewTurn) -> Result<(TurnCreated, bool), TurnError> {
        let turn_id = req.turn_id.clone();
        let owner = format!("{}\n{}", req.user_id, req.conversation_id);
        let prev = self.log.claim(&index_key(&turn_id), &owner, INDEX_TTL).await?;
        if prev.as_deref().is_some_and(|p| p.split('\n').next() != Some(req.user_id.as_str())) {
            return Err(TurnError::Conflict(turn_id));
        }
        let now = now_ms();
        let mut rec = TurnRec::new(&req.user_id, &req.conversation_id, req.meta.clone(), now);
        if let Some(tp) = &req.trace {
            self.traces.insert(turn_id.clone(), tp.clone());
        }
        rec.trace = req.trace;
        let start = EventBody::TurnStart {
            turn_id: turn_id.clone(),
            conversation_id: req.conversation_id.clone(),
            created_at: crate::ids::rfc3339_ms(now),
            meta: req.meta,
        };
        let mut a = Append::to(
            &req.user_id,
            &record_name(&turn_id),
            Expect::Absent,
            vec![Event::of(&start)],
        );
        a.set = rec.fields();
        a.keep = Keep::For(STREAMING_TTL);
        match self.log.append_if(a).await? {
            Outcome::Appended { first, version, .. } => {
                (rec.version, rec.start_seq) = (version, first);
                let record = rec.finished(&turn_id, String::new(), &[], 0)?.turn;
                self.local(&turn_id).lock().await.rec = Some(rec);
                self.sink.opened(&record).await;
                if let Err(e) = self.log.watch(STREAMING, &turn_id, now).await {
                    tracing::warn!(%turn_id, error = %e, "cannot note a turn for the idle sweep");
                }
                Ok((TurnCreated { turn_id, seq: first }, true))
            }
            Outcome::Refused(Some(r)) => {
                let rec = TurnRec::parse(&r)?;
                if rec.user_id == req.user_id && rec.conversation_id == req.conversation_id {
                    Ok((TurnCreated { turn_id, seq: rec.start_seq }, false))
                } else {
                    Err(TurnError::Conflict(turn_id))
                }
            }
            Outcome::Refused(None) => Err(TurnError::Conflict(turn_id)),
        }
    }

    /// Applies producer items in order; stops at the first refused. An `end` makes the
    /// finished turn durable in the outbox before its `turn.end` is published.
    pub async fn apply(&self, turn_id: &str, items: Vec<EventItem>) -> Applied {
        let span = crate::otel_span!("apply", turn_id, items = items.len());
        match self.change(turn_id, None, items, By::Producer).instrument(span).await {
            Ok(a) => a,
            Err(e) => Applied { refused: Some(e), ..Applied::default() },
        }
    }

    /// `turn.cancel` from a device of the turn's user: ends it as `cancelled`.
    pub async fn cancel(&self, user: &str, turn_id: &str) -> Result<u64, TurnError> {
        let end = EventItem::End(EndItem { status: TurnStatus::Cancelled, error: None });
        let a = self.change(turn_id, Some(user), vec![end], By::Gateway).await?;
        match (a.refused, a.last_seq) {
            (Some(e), _) => Err(e),
            (None, Some(seq)) => Ok(seq),
            (None, None) => Err(TurnError::NotFound(turn_id.to_owned())),
        }
    }

    /// Decides and appends a batch, again on the record as it is when it moved meanwhile.
    async fn change(
        &self,
        turn_id: &str,
        user: Option<&str>,
        items: Vec<EventItem>,
        by: By,
    ) -> Result<Applied, TurnError> {
        let local = self.local(turn_id);
        let mut l = local.lock().await;
        l.used = Some(Instant::now());
        let mut rec = self.current(&mut l, turn_id, user).await?;
        let started = Instant::now();
        while started.elapsed() < RETRY_FOR {
            let p = plan(turn_id, &rec, items.clone(), by, self.cfg.max_text, now_ms());
            if p.accepted == 0 {
                l.rec = Some(rec);
                return Ok(Applied { accepted: 0, last_seq: None, refused: p.refused });
            }
            match self.commit(turn_id, &rec, p).await? {
                Ok((applied, next)) => {
                    l.rec = Some(next);
                    return Ok(applied);
                }
                Err(Some(moved)) => rec = moved,
                Err(None) => {
                    l.rec = None;
                    return Err(TurnError::NotFound(turn_id.to_owned()));
                }
            }
        }
        l.rec = None;
        Err(Unavailable {
            code: "busy",
            message: "the turn changed too often to apply this; try again".into(),
        }
        .into())
    }

    /// Appends a plan: `Ok(Ok(..))` done; `Ok(Err(record))` the record moved (or is gone).
    async fn commit(
        &self,
        turn_id: &str,
        rec: &TurnRec,
        mut p: Plan,
    ) -> Result<Result<(Applied, TurnRec), Option<TurnRec>>, TurnError> {
        if p.ends() {
            let copy = match self.sink.wants_copy() {
                true => Some(self.copy(turn_id, &p).await?),
                false => None,
            };
            self.sink.finishing(&rec.user_id, turn_id, copy).await?;
            p.append.keep = self.sink.ended_keep();
        }
        let publish =
            crate::otel_span!("publish", user_id = %rec.user_id, events = p.append.events.len());
        match self.log.append_if(p.append).instrument(publish).await? {
            Outcome::Appended { last, version, .. } => {
                let mut next = p.next;
                next.version = version;
                if rec.next_index == 0
                    && next.next_index > 0
                    && let Some(h) = &self.first_delta
                {
                    h.record((now_ms() - rec.created_ms).max(0) as f64 / 1000.0);
                }
                if next.status != TurnStatus::Streaming {
                    self.sink.ended();
                }
                let applied =
                    Applied { accepted: p.accepted, last_seq: Some(last), refused: p.refused };
                Ok(Ok((applied, next)))
            }
            Outcome::Refused(Some(r)) => Ok(Err(Some(TurnRec::parse(&r)?))),
            Outcome::Refused(None) => Ok(Err(None)),
        }
    }

    /// The finished turn a plan that ends it makes: the text and traces so far and the plan's.
    async fn copy(&self, turn_id: &str, p: &Plan) -> Result<store_client::FinalTurn, TurnError> {
        let blobs = Blobs { text: true, items: true };
        let read = self.log.read(&p.next.user_id, &record_name(turn_id), blobs).await?;
        let read = read.ok_or_else(|| TurnError::NotFound(turn_id.to_owned()))?;
        let mut traces = read.items;
        traces.extend(p.append.items.iter().cloned());
        Ok(p.next.finished(turn_id, read.text + &p.append.text, &traces, self.cfg.max_text)?)
    }

    /// `turn.sync`: the user's own turn's text so far.
    pub async fn snapshot(&self, user: &str, turn_id: &str) -> Result<Snapshot, TurnError> {
        let blobs = Blobs { text: true, items: false };
        let read = self.log.read(user, &record_name(turn_id), blobs).await?;
        let read = read.ok_or_else(|| TurnError::NotFound(turn_id.to_owned()))?;
        let rec = TurnRec::parse(&read.record)?;
        Ok(Snapshot {
            turn_id: turn_id.to_owned(),
            conversation_id: rec.conversation_id,
            status: rec.status,
            text: read.text,
            next_index: rec.next_index,
            as_of_seq: read.head,
        })
    }

    /// `GET /v1/turns/{id}`.
    pub async fn state(&self, turn_id: &str) -> Result<wire::api::TurnState, TurnError> {
        let not_found = || TurnError::NotFound(turn_id.to_owned());
        let user = self.owner(turn_id).await?.ok_or_else(not_found)?;
        let read = self.log.read(&user, &record_name(turn_id), Blobs::default()).await?;
        Ok(TurnRec::parse(&read.ok_or_else(not_found)?.record)?.state(turn_id))
    }

    pub(super) fn log(&self) -> &Arc<dyn Backplane> {
        &self.log
    }

    pub(super) fn sink(&self) -> &Arc<dyn TurnSink> {
        &self.sink
    }

    pub(super) fn max_text(&self) -> usize {
        self.cfg.max_text
    }
}

/// The Redis outbox reads finished turns through this (it knows only which turns wait).
impl Turns {
    pub async fn assemble(&self, user: &str, turn_id: &str) -> Result<Assembled, Unavailable> {
        let blobs = Blobs { text: true, items: true };
        let Some(read) = self.log.read(user, &record_name(turn_id), blobs).await? else {
            return Ok(Assembled::Gone);
        };
        let rec = TurnRec::parse(&read.record)?;
        if rec.status == TurnStatus::Streaming {
            return Ok(Assembled::Streaming);
        }
        let done = rec.finished(turn_id, read.text, &read.items, self.cfg.max_text)?;
        Ok(Assembled::Ended(Box::new(store_client::Final::Turn(done))))
    }

    pub async fn stored(&self, user: &str, turn_id: &str) -> Result<(), Unavailable> {
        let keep = Keep::For(self.cfg.turn_retention);
        self.log.keep(user, &record_name(turn_id), keep).await
    }
}
