//! The checker on crafted streams: each broken promise is caught, and a clean stream is clean.

use std::time::Instant;

use super::*;

fn ev(seq: u64, body: EventBody) -> LogEvent {
    LogEvent { seq, body }
}

fn delta(user: u32, n: u64, index: u64, text: &str) -> EventBody {
    EventBody::TurnDelta { turn_id: turn_id("r", user, n), index, text: text.into() }
}

fn start(user: u32, n: u64) -> EventBody {
    EventBody::TurnStart {
        turn_id: turn_id("r", user, n),
        conversation_id: "c".into(),
        created_at: "x".into(),
        meta: None,
    }
}

fn end(user: u32, n: u64) -> EventBody {
    EventBody::TurnEnd {
        turn_id: turn_id("r", user, n),
        status: TurnStatus::Completed,
        error: None,
    }
}

struct Fixture {
    violations: Arc<Violations>,
    ledger: Arc<Ledger>,
}

impl Fixture {
    fn new() -> Self {
        Fixture { violations: Arc::default(), ledger: Arc::default() }
    }

    fn endpoint(&self, user: u32) -> EndpointCheck {
        let mut c = EndpointCheck::new(user, self.violations.clone(), self.ledger.clone());
        c.on_hello("e1", 0, false, false);
        c
    }

    fn feed(&self, c: &mut EndpointCheck, events: &[LogEvent]) {
        for e in events {
            let raw = serde_json::to_string(e).unwrap();
            c.on_event(e, hash(&raw), Instant::now());
        }
    }

    fn counts(&self) -> Vec<(Kind, u64)> {
        self.violations.counts().into_iter().collect()
    }
}

fn turn(user: u32, pieces: &[&str]) -> Vec<LogEvent> {
    let mut v = vec![ev(1, start(user, 1))];
    for (i, p) in pieces.iter().enumerate() {
        v.push(ev(i as u64 + 2, delta(user, 1, i as u64, p)));
    }
    v.push(ev(pieces.len() as u64 + 2, end(user, 1)));
    v
}

#[test]
fn a_clean_stream_on_two_devices_has_no_violation() {
    let f = Fixture::new();
    f.ledger.texts.insert(turn_id("r", 7, 1), "hello world".into());
    let events = turn(7, &["hello", " ", "world"]);
    let (mut a, mut b) = (f.endpoint(7), f.endpoint(7));
    f.feed(&mut a, &events);
    f.feed(&mut b, &events);
    a.finish();
    b.finish();
    assert_eq!(f.counts(), vec![]);
    assert!(a.caught_up(5) && !a.caught_up(6));
}

#[test]
fn a_gap_is_lost() {
    let f = Fixture::new();
    let mut e = turn(1, &["a", "b", "c"]);
    e.remove(2);
    let mut c = f.endpoint(1);
    f.feed(&mut c, &e);
    c.finish();
    assert!(f.counts().contains(&(Kind::Lost, 1)), "{:?}", f.counts());
    assert!(f.counts().iter().any(|(k, _)| *k == Kind::IndexOrder), "the delta index jumped too");
}

#[test]
fn a_duplicate_is_caught() {
    let f = Fixture::new();
    f.ledger.texts.insert(turn_id("r", 1, 1), "ab".into());
    let mut e = turn(1, &["a", "b"]);
    e.insert(2, e[1].clone());
    let mut c = f.endpoint(1);
    f.feed(&mut c, &e);
    c.finish();
    assert_eq!(f.counts(), vec![(Kind::Duplicate, 1)]);
}

#[test]
fn a_reorder_is_caught() {
    let f = Fixture::new();
    let mut e = turn(1, &["a", "b"]);
    e.swap(1, 2);
    let mut c = f.endpoint(1);
    f.feed(&mut c, &e);
    c.finish();
    let counts = f.counts();
    assert!(counts.contains(&(Kind::Reordered, 1)), "{counts:?}");
    assert!(!counts.iter().any(|(k, _)| *k == Kind::Lost));
}

#[test]
fn a_foreign_users_event_is_caught() {
    let f = Fixture::new();
    let mut c = f.endpoint(1);
    f.feed(&mut c, &[ev(1, start(2, 1))]);
    let notif = EventBody::Notification {
        id: "n".into(),
        category: "c".into(),
        priority: wire::Priority::Normal,
        title: notification_title(3),
        body: "b".into(),
        data: serde_json::Value::Null,
        created_at: "x".into(),
        unread_count: None,
    };
    f.feed(&mut c, &[ev(1, notif)]);
    assert_eq!(f.counts(), vec![(Kind::ForeignUser, 2)]);
}

#[test]
fn wrong_text_is_caught() {
    let f = Fixture::new();
    f.ledger.texts.insert(turn_id("r", 1, 1), "abc".into());
    let mut c = f.endpoint(1);
    f.feed(&mut c, &turn(1, &["a", "x", "c"]));
    assert_eq!(f.counts(), vec![(Kind::WrongText, 1)]);
}

#[test]
fn devices_that_disagree_are_caught() {
    let f = Fixture::new();
    let (mut a, mut b) = (f.endpoint(1), f.endpoint(1));
    f.feed(&mut a, &[ev(1, start(1, 1))]);
    f.feed(&mut b, &[ev(1, start(1, 2))]);
    assert_eq!(f.counts(), vec![(Kind::DeviceMismatch, 1)]);
}

#[test]
fn resume_continues_and_a_refused_resume_is_counted() {
    let f = Fixture::new();
    f.ledger.texts.insert(turn_id("r", 1, 1), "abc".into());
    let e = turn(1, &["a", "b", "c"]);
    let mut c = f.endpoint(1);
    f.feed(&mut c, &e[..2]);
    assert_eq!(c.resume_point(), Some(("e1".into(), 2)));
    c.on_hello("e1", 5, true, true);
    f.feed(&mut c, &e[2..]);
    c.finish();
    assert_eq!(f.counts(), vec![], "a resumed endpoint sees the turn whole");

    let mut d = f.endpoint(1);
    f.feed(&mut d, &e[..2]);
    d.on_hello("e2", 9, false, true);
    assert_eq!(d.next, 10);
    assert_eq!(f.counts(), vec![(Kind::ResumeRefused, 1)]);
}
