//! Turn rules checked on every backplane (part of [`super::contract::run_all`]): a turn
//! behaves the same whichever node is asked, a batch stops at its first refused item, an ended
//! turn waits in the outbox once, producers racing on two nodes keep indexes whole, and a
//! cancel racing deltas is the last event.

use std::time::Duration;

use serde_json::json;
use wire::api::{EndItem, EventItem, TraceItem};
use wire::{EventBody, LogEvent, TurnStatus};

use super::contract::{Endpoint, Fixture, Node, unique};
use super::{NewTurn, TurnError};

/// The `(index, text)` of every `turn.delta` among `events`, in order.
fn deltas(events: &[LogEvent]) -> Vec<(u64, &str)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::TurnDelta { index, text, .. } => Some((*index, text.as_str())),
            _ => None,
        })
        .collect()
}

fn turn(user: &str, conv: &str, id: &str) -> NewTurn {
    NewTurn {
        user_id: user.into(),
        conversation_id: conv.into(),
        turn_id: id.into(),
        meta: Some(json!({"m": 1})),
        trace: None,
    }
}

fn delta(t: &str) -> EventItem {
    EventItem::Delta(t.into())
}

fn end(status: TurnStatus) -> EventItem {
    EventItem::End(EndItem { status, error: None })
}

pub async fn turns_behave_the_same_whichever_node_is_asked(fx: Fixture) {
    let (u, id) = (unique("u"), unique("t"));
    let mut device = Endpoint::attach(&fx.a, &u, None).await;
    let (created, fresh) = fx.a.turns.create(turn(&u, "c", &id)).await.unwrap();
    assert!(fresh);
    let (again, fresh) = fx.b.turns.create(turn(&u, "c", &id)).await.unwrap();
    assert_eq!((again.seq, fresh), (created.seq, false), "idempotent on any node");
    assert!(matches!(
        fx.b.turns.create(turn(&u, "other-conv", &id)).await,
        Err(TurnError::Conflict(_))
    ));
    assert!(matches!(
        fx.a.turns.create(turn("someone-else", "c", &id)).await,
        Err(TurnError::Conflict(_))
    ));

    let items = vec![
        delta("Hel"),
        EventItem::Trace(TraceItem { kind: "tool_call".into(), data: json!({"x": 1}) }),
        delta("lo "),
        delta("wörld"),
    ];
    let applied = fx.b.turns.apply(&id, items).await;
    assert_eq!((applied.accepted, applied.refused.clone()), (4, None));
    let snap = fx.a.turns.snapshot(&u, &id).await.unwrap();
    assert_eq!((snap.text.as_str(), snap.next_index), ("Hello wörld", 3));
    assert_eq!(snap.as_of_seq, applied.last_seq.unwrap(), "consistent with the log position");
    let state = fx.b.turns.state(&id).await.unwrap();
    assert_eq!((state.text_len, state.status), (11, TurnStatus::Streaming));
    assert!(matches!(fx.a.turns.snapshot("someone-else", &id).await, Err(TurnError::NotFound(_))));
    assert!(matches!(fx.b.turns.cancel("someone-else", &id).await, Err(TurnError::NotFound(_))));

    let end_seq = fx.b.turns.cancel(&u, &id).await.unwrap();
    let late = fx.a.turns.apply(&id, vec![delta("late")]).await;
    assert_eq!(late.accepted, 0);
    assert!(matches!(late.refused, Some(TurnError::Ended { status: TurnStatus::Cancelled, .. })));
    assert!(matches!(fx.a.turns.cancel(&u, &id).await, Err(TurnError::Ended { .. })));
    assert_eq!(fx.a.turns.state(&id).await.unwrap().status, TurnStatus::Cancelled);

    let seen = device.take(6).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.body.kind()).collect();
    assert_eq!(
        kinds,
        ["turn.start", "turn.delta", "turn.trace", "turn.delta", "turn.delta", "turn.end"]
    );
    assert_eq!(seen.last().unwrap().seq, end_seq);
    let indexes: Vec<u64> = deltas(&seen).iter().map(|d| d.0).collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(matches!(fx.a.turns.state("no-such-turn").await, Err(TurnError::NotFound(_))));
}

pub async fn a_batch_stops_at_the_first_refused_item(fx: Fixture) {
    let (u, id) = (unique("u"), unique("t"));
    fx.a.turns.create(turn(&u, "c", &id)).await.unwrap();
    let bad_end = fx.a.turns.apply(&id, vec![delta("a"), end(TurnStatus::Cancelled)]).await;
    assert_eq!(bad_end.accepted, 1);
    assert!(matches!(bad_end.refused, Some(TurnError::Invalid(_))), "producers cannot cancel");
    let applied =
        fx.b.turns.apply(&id, vec![delta("b"), end(TurnStatus::Completed), delta("never")]).await;
    assert_eq!(applied.accepted, 2);
    assert!(matches!(applied.refused, Some(TurnError::Ended { .. })));
    let state = fx.a.turns.state(&id).await.unwrap();
    assert_eq!((state.next_index, state.status), (2, TurnStatus::Completed));
    let unknown = fx.a.turns.apply("no-such-turn", vec![delta("x")]).await;
    assert!(matches!(unknown.refused, Some(TurnError::NotFound(_))));
}

pub async fn an_ended_turn_waits_in_the_outbox_once_with_its_exact_text(fx: Fixture) {
    let (u, id) = (unique("u"), unique("t"));
    fx.a.turns.create(turn(&u, "conv", &id)).await.unwrap();
    let trace = EventItem::Trace(TraceItem { kind: "reasoning".into(), data: json!(["why"]) });
    let items = vec![delta("ab"), trace, delta("cé"), end(TurnStatus::Completed)];
    assert_eq!(fx.b.turns.apply(&id, items).await.accepted, 4);
    // Ended again, and cancelled: refused, never a second entry.
    assert!(fx.a.turns.apply(&id, vec![end(TurnStatus::Failed)]).await.refused.is_some());
    assert!(fx.a.turns.cancel(&u, &id).await.is_err());
    let stats = fx.outbox.stats().await.unwrap();
    assert_eq!(stats.depth, 1);
    let pending = fx.outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(pending.len(), 1);
    let store_client::Final::Turn(t) = &pending[0].item else { panic!("a turn") };
    assert_eq!(t.turn.turn_id, id);
    assert_eq!((t.turn.user_id.as_str(), t.turn.conversation_id.as_str()), (u.as_str(), "conv"));
    assert_eq!(t.turn.text, "abcé");
    assert_eq!(t.turn.status, TurnStatus::Completed);
    assert_eq!(t.turn.meta, json!({"m": 1}));
    assert!(t.turn.completed_at_ms >= t.turn.created_at_ms && t.turn.created_at_ms > 0);
    assert_eq!(t.traces.len(), 1);
    assert_eq!((t.traces[0].kind.as_str(), &t.traces[0].data), ("reasoning", &json!(["why"])));
    fx.outbox.complete(&id).await.unwrap();
    assert_eq!(fx.outbox.stats().await.unwrap().depth, 0);
}

/// Two producers feeding one turn from two nodes at once: every delta lands once, indexes rise
/// with seq without a hole (a record that moved under a batch is decided again).
pub async fn producers_on_two_nodes_race_and_indexes_stay_whole(fx: Fixture) {
    let (u, id) = (unique("u"), unique("t"));
    let mut device = Endpoint::attach(&fx.a, &u, None).await;
    fx.a.turns.create(turn(&u, "c", &id)).await.unwrap();
    let feed = |node: Node, tag: &'static str| {
        let id = id.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let items = (0..5).map(|k| delta(&format!("{tag}{i}.{k} "))).collect();
                let a = node.turns.apply(&id, items).await;
                assert_eq!((a.accepted, a.refused), (5, None));
            }
        })
    };
    let (x, y) = (feed(fx.a.clone(), "a"), feed(fx.b.clone(), "b"));
    x.await.unwrap();
    y.await.unwrap();
    let seen = device.take(401).await;
    let indexes: Vec<u64> = deltas(&seen).iter().map(|d| d.0).collect();
    assert_eq!(indexes, (0..400).collect::<Vec<_>>());
    let snap = fx.b.turns.snapshot(&u, &id).await.unwrap();
    assert_eq!(snap.next_index, 400);
    let joined: String = deltas(&seen).iter().map(|d| d.1).collect();
    assert_eq!(snap.text, joined, "the kept text is the deltas in index order");
}

/// A device cancels while a producer streams from the other node: the `turn.end` is the turn's
/// last event, every later batch is refused, and the stored text is what was streamed.
pub async fn a_cancel_racing_deltas_is_the_last_event(fx: Fixture) {
    let (u, id) = (unique("u"), unique("t"));
    let mut device = Endpoint::attach(&fx.a, &u, None).await;
    fx.a.turns.create(turn(&u, "c", &id)).await.unwrap();
    let producer = {
        let (node, id) = (fx.b.clone(), id.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            for i in 0..200 {
                let a = node.turns.apply(&id, vec![delta(&format!("{i} ")), delta("x")]).await;
                sent += a.accepted;
                if a.refused.is_some() {
                    assert!(matches!(a.refused, Some(TurnError::Ended { .. })), "{a:?}");
                    break;
                }
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let end_seq = fx.a.turns.cancel(&u, &id).await.unwrap();
    let sent = producer.await.unwrap();
    let seen = device.take(sent as usize + 2).await;
    assert_eq!(seen.last().unwrap().seq, end_seq, "nothing after the end");
    assert!(matches!(seen.last().unwrap().body, EventBody::TurnEnd { .. }));
    let pending = fx.outbox.claim(10, Duration::from_secs(30)).await.unwrap();
    let stored = &pending.iter().find(|p| p.item.key() == id).expect("in the outbox").item;
    let store_client::Final::Turn(stored) = stored else { panic!("a turn") };
    assert_eq!(stored.turn.status, TurnStatus::Cancelled);
    let streamed: String = deltas(&seen).iter().map(|d| d.1).collect();
    assert_eq!(stored.turn.text, streamed);
}
