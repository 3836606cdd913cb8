//! The domain's rules, and the log behaviour they stand on, checked on every backplane. A
//! fixture is two nodes sharing one backplane (the in-memory one: the same node twice; Redis:
//! two backplanes on one Redis), each with its own turn and notification services, and the
//! drain side of the outbox; each check gets a fresh fixture. Endpoints read through the same
//! [`Feed`] a real connection uses, so what is checked is what a client would see.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use store_client::Outbox;
use wire::api::CreateNotification;
use wire::{EventBody, LogEvent};

use super::notifications::NotifyConfig;
use super::{Notifications, TurnSink, Turns, TurnsConfig};
use crate::backplane::Backplane;
use crate::hub::{Attachment, Hub, Ready, ResumeFrom};
use crate::transport::feed::Feed;

/// One gateway node: its backplane, its hub of endpoints and the domain over them.
#[derive(Clone)]
pub struct Node {
    pub backplane: Arc<dyn Backplane>,
    pub hub: Arc<Hub>,
    pub turns: Arc<Turns>,
    pub notes: Arc<Notifications>,
    pub tasks: Arc<super::Tasks>,
}

impl Node {
    pub fn new(
        backplane: Arc<dyn Backplane>,
        hub: Arc<Hub>,
        sink: Arc<dyn TurnSink>,
        store: Arc<dyn store_client::TurnStore>,
    ) -> Node {
        let cfg = TurnsConfig {
            max_text: 1 << 20,
            turn_idle: Duration::from_secs(600),
            turn_retention: Duration::from_secs(3600),
        };
        let turns = Arc::new(Turns::new(backplane.clone(), sink.clone(), cfg));
        let tasks_cfg = super::TasksConfig {
            max_bytes: 1 << 20,
            max_open: 100,
            retention: Duration::from_secs(3600),
        };
        let tasks =
            Arc::new(super::Tasks::new(backplane.clone(), sink.clone(), store.clone(), tasks_cfg));
        let notify = NotifyConfig {
            dedup_window: Duration::from_secs(3600),
            budget: 0,
            budget_window: Duration::from_secs(3600),
        };
        let presence = Arc::new(presence::MemoryPresence::new(Duration::from_secs(60)));
        let notes =
            Arc::new(Notifications::new(backplane.clone(), store, sink, notify, presence, None));
        Node { backplane, hub, turns, notes, tasks }
    }

    /// What the Redis outbox reads finished turns and tasks through.
    pub fn finishers(&self) -> Arc<super::finished::Finishers> {
        Arc::new(super::finished::Finishers {
            turns: self.turns.clone(),
            tasks: self.tasks.clone(),
            notes: self.notes.clone(),
        })
    }
}

pub struct Fixture {
    pub a: Node,
    pub b: Node,
    /// Where ended turns wait for the store (nothing drains it during the checks).
    pub outbox: Arc<dyn Outbox>,
    /// Whatever must live as long as the fixture (a temporary directory, say).
    pub guard: Option<Box<dyn Send + Sync>>,
}

/// Makes fresh fixtures whose logs keep `retention` events.
#[async_trait]
pub trait Factory: Sync {
    async fn make(&self, retention: usize) -> Fixture;
}

/// An endpoint under test.
pub struct Endpoint {
    pub att: Attachment,
    feed: Feed,
    node: Node,
}

impl Endpoint {
    pub async fn attach(node: &Node, user: &str, resume: Option<&ResumeFrom>) -> Endpoint {
        let reservation = node.hub.reserve(user).expect("admitted");
        let att = node.backplane.attach(reservation, resume).await.expect("attached");
        Endpoint { feed: Feed::new(&att), att, node: node.clone() }
    }

    pub fn resume_point(&self, after: u64) -> ResumeFrom {
        ResumeFrom { epoch: self.att.epoch.to_string(), after }
    }

    /// The next `n` events this endpoint's client would be sent (after any replay).
    pub async fn take(&mut self, n: usize) -> Vec<LogEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            let ready = tokio::time::timeout(Duration::from_secs(5), self.att.outbox.ready())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} events arrived: {out:?}", out.len()));
            assert!(!matches!(ready, Ready::Close(_)), "closed while waiting");
            let user = self.att.user.clone();
            let batch =
                self.feed.admit(ready, &*self.node.backplane, &user).await.expect("in order");
            out.extend(batch.iter().map(|e| serde_json::from_str(e.json.as_str()).unwrap()));
        }
        assert_eq!(out.len(), n, "more events than expected: {out:?}");
        out
    }

    pub fn replayed(&self) -> Vec<u64> {
        self.att.replay.iter().map(|e| e.seq).collect()
    }
}

pub(super) fn seqs(events: &[LogEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

pub(super) fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u64>())
}

fn note(user: &str, title: &str, key: Option<&str>) -> CreateNotification {
    CreateNotification {
        user_id: user.into(),
        category: "c".into(),
        priority: None,
        title: title.into(),
        body: "b".into(),
        data: None,
        dedup_key: key.map(str::to_owned),
    }
}

/// Runs every check, each on a fresh fixture.
pub async fn run_all(f: &dyn Factory) {
    every_endpoint_on_every_node_gets_every_event_in_order(f.make(100).await).await;
    resume_replays_exactly_what_was_missed(f.make(100).await).await;
    resume_fails_once_the_log_no_longer_holds_the_events(f.make(3).await).await;
    super::contract_turns::turns_behave_the_same_whichever_node_is_asked(f.make(100).await).await;
    super::contract_turns::a_batch_stops_at_the_first_refused_item(f.make(100).await).await;
    super::contract_turns::an_ended_turn_waits_in_the_outbox_once_with_its_exact_text(
        f.make(100).await,
    )
    .await;
    notification_dedup_holds_across_nodes(f.make(100).await).await;
    missed_events_can_be_read_back(f.make(100).await).await;
    users_whose_names_look_alike_stay_apart(f.make(100).await).await;
    super::contract_turns::producers_on_two_nodes_race_and_indexes_stay_whole(f.make(10_000).await)
        .await;
    super::contract_turns::a_cancel_racing_deltas_is_the_last_event(f.make(10_000).await).await;
    super::contract_log::appends_of_many_users_at_once_keep_each_log_whole(f.make(1_000).await)
        .await;
    super::contract_tasks::a_task_is_one_on_every_node(f.make(1_000).await).await;
    super::contract_tasks::a_cancel_racing_artifacts_ends_the_task_once(f.make(10_000).await).await;
    super::contract_tasks::the_open_task_cap_frees_as_tasks_are_stored(f.make(1_000).await).await;
}

pub async fn every_endpoint_on_every_node_gets_every_event_in_order(fx: Fixture) {
    let (u1, u2) = (unique("u1"), unique("u2"));
    let mut on_a = Endpoint::attach(&fx.a, &u1, None).await;
    let mut on_b = Endpoint::attach(&fx.b, &u1, None).await;
    let mut other = Endpoint::attach(&fx.a, &u2, None).await;
    assert_eq!(on_a.att.epoch, on_b.att.epoch, "one log, one epoch, on every node");
    for i in 0..20 {
        let node = if i % 2 == 0 { &fx.a } else { &fx.b };
        let seq = node.notes.mark_read(&u1, &format!("n{i}")).await.unwrap();
        assert_eq!(seq, i + 1, "seq is contiguous from 1 whichever node appends");
    }
    let a = on_a.take(20).await;
    assert_eq!(seqs(&a), (1..=20).collect::<Vec<_>>());
    assert_eq!(a, on_b.take(20).await, "both nodes' endpoints saw the same events");
    let (sent, _) = fx.b.notes.notify(note(&u2, "for u2", None)).await.unwrap();
    let got = other.take(1).await;
    assert_eq!(got[0].seq, 1, "another user's log is apart");
    assert_eq!(sent.seq, Some(1));
}

pub async fn resume_replays_exactly_what_was_missed(fx: Fixture) {
    let u = unique("u");
    let first = Endpoint::attach(&fx.a, &u, None).await;
    for i in 0..5 {
        fx.a.notes.mark_read(&u, &format!("r{i}")).await.unwrap();
    }
    let mut back = Endpoint::attach(&fx.b, &u, Some(&first.resume_point(2))).await;
    assert!(back.att.resumed);
    assert_eq!(back.att.head, 5);
    assert_eq!(back.replayed(), vec![3, 4, 5]);
    fx.a.notes.mark_read(&u, "live").await.unwrap();
    assert_eq!(seqs(&back.take(1).await), vec![6], "live continues the replay, no overlap");

    let wrong = ResumeFrom { epoch: "another-life".into(), after: 2 };
    let e = Endpoint::attach(&fx.b, &u, Some(&wrong)).await;
    assert!(!e.att.resumed && e.att.replay.is_empty(), "another epoch is not resumed");
    let e = Endpoint::attach(&fx.a, &u, Some(&first.resume_point(99))).await;
    assert!(!e.att.resumed, "a seq beyond the head is not of this log");
    let e = Endpoint::attach(&fx.a, &u, Some(&first.resume_point(6))).await;
    assert!(e.att.resumed && e.att.replay.is_empty(), "up to date: resumed, nothing to replay");
}

pub async fn resume_fails_once_the_log_no_longer_holds_the_events(fx: Fixture) {
    let u = unique("u");
    let first = Endpoint::attach(&fx.a, &u, None).await;
    for i in 0..6 {
        fx.b.notes.mark_read(&u, &format!("t{i}")).await.unwrap();
    }
    let e = Endpoint::attach(&fx.a, &u, Some(&first.resume_point(1))).await;
    assert!(!e.att.resumed, "seq 2 and 3 were trimmed (3 kept)");
    let e = Endpoint::attach(&fx.b, &u, Some(&first.resume_point(3))).await;
    assert!(e.att.resumed);
    assert_eq!(e.replayed(), vec![4, 5, 6]);
}

pub async fn notification_dedup_holds_across_nodes(fx: Fixture) {
    let u = unique("u");
    let mut device = Endpoint::attach(&fx.b, &u, None).await;
    let (first, fresh) = fx.a.notes.notify(note(&u, "once", Some("k1"))).await.unwrap();
    assert!(fresh);
    let (again, fresh) = fx.b.notes.notify(note(&u, "twice", Some("k1"))).await.unwrap();
    assert_eq!(
        (again.id.clone(), again.seq, fresh),
        (first.id.clone(), None, false),
        "the first id, nothing published"
    );
    let (_, fresh) = fx.b.notes.notify(note(&unique("v"), "x", Some("k1"))).await.unwrap();
    assert!(fresh, "keys are per user");
    let (next, _) = fx.a.notes.notify(note(&u, "next", None)).await.unwrap();
    let seen = device.take(2).await;
    assert_eq!(seqs(&seen), vec![first.seq.unwrap(), next.seq.unwrap()]);
    assert!(matches!(&seen[0].body, EventBody::Notification { title, .. } if title == "once"));
}

pub async fn missed_events_can_be_read_back(fx: Fixture) {
    let u = unique("u");
    let e = Endpoint::attach(&fx.a, &u, None).await;
    for i in 0..5 {
        fx.b.notes.mark_read(&u, &format!("m{i}")).await.unwrap();
    }
    let got = fx.a.backplane.missed(&u, &e.att.epoch, 1, 3).await.unwrap().expect("held");
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(fx.b.backplane.missed(&u, "another-life", 1, 3).await.unwrap().is_none());
}

/// Ids that a key encoding could map onto one another (a brace forces the hex form, which
/// starts with `#`; a `#` in a plain id) keep apart logs, live events and epochs.
pub async fn users_whose_names_look_alike_stay_apart(fx: Fixture) {
    let base = unique("x");
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let braced = format!("{{{base}}}");
    let users = [
        braced.clone(),
        format!("#{}", hex(&braced)),
        base.clone(),
        format!("#{}", hex(&base)),
        format!("#team-{base}"),
        format!("{{#{base}"),
    ];
    let mut devices = Vec::new();
    for u in &users {
        devices.push(Endpoint::attach(&fx.a, u, None).await);
    }
    for (i, u) in users.iter().enumerate() {
        let seq = fx.b.notes.mark_read(u, &format!("n{i}")).await.unwrap();
        assert_eq!(seq, 1, "{u:?} has a log of its own");
    }
    for (i, (u, device)) in users.iter().zip(devices.iter_mut()).enumerate() {
        let got = device.take(1).await;
        let want = format!("n{i}");
        assert!(
            matches!(&got[0].body, EventBody::NotificationRead { id } if *id == want),
            "{u:?} got {got:?}"
        );
        let later = tokio::time::timeout(Duration::from_millis(50), device.att.outbox.ready());
        assert!(later.await.is_err(), "{u:?} received another user's event");
    }
}
