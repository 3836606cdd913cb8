use std::time::Duration;

use std::future::Future;

use super::*;

fn hub(retention: usize, max_endpoints: usize, queue: usize) -> Hub {
    Hub::new(
        Retention {
            count: retention,
            age: Duration::from_secs(3600),
            bytes: 1 << 30,
            node_bytes: 1 << 40,
        },
        max_endpoints,
        queue,
        Arc::new(Metrics::new()),
    )
}

fn read(id: &str) -> EventBody {
    EventBody::NotificationRead { id: id.into() }
}

fn drain(a: &mut Attachment) -> Vec<u64> {
    let waker = futures_util::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut ready = std::pin::pin!(a.outbox.ready());
    match ready.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ready::Events(q)) => q.iter().map(|e| e.seq).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn every_endpoint_gets_every_event_in_order_and_users_are_apart() {
    let h = hub(100, 8, 64);
    let mut a = h.attach(h.reserve("u1").unwrap(), None);
    let mut b = h.attach(h.reserve("u1").unwrap(), None);
    let mut other = h.attach(h.reserve("u2").unwrap(), None);
    for i in 0..10 {
        h.publish("u1", &read(&i.to_string()));
    }
    assert_eq!(drain(&mut a), (1..=10).collect::<Vec<_>>());
    assert_eq!(drain(&mut b), (1..=10).collect::<Vec<_>>());
    assert!(drain(&mut other).is_empty());
    assert_eq!(h.head("u1"), 10);
    assert_eq!(h.head("u2"), 0);
}

#[test]
fn resume_replays_exactly_the_missing_events() {
    let h = hub(100, 8, 64);
    let first = h.attach(h.reserve("u").unwrap(), None);
    let epoch = first.epoch.to_string();
    for i in 0..5 {
        h.publish("u", &read(&i.to_string()));
    }
    let mut r =
        h.attach(h.reserve("u").unwrap(), Some(&ResumeFrom { epoch: epoch.clone(), after: 2 }));
    assert!(r.resumed);
    assert_eq!(r.head, 5);
    assert_eq!(r.replay.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    h.publish("u", &read("live"));
    assert_eq!(drain(&mut r), vec![6], "live events continue the replay, no overlap");

    let wrong =
        h.attach(h.reserve("u").unwrap(), Some(&ResumeFrom { epoch: "other".into(), after: 2 }));
    assert!(!wrong.resumed && wrong.replay.is_empty());
    let future = h.attach(h.reserve("u").unwrap(), Some(&ResumeFrom { epoch, after: 99 }));
    assert!(!future.resumed);
}

#[test]
fn resume_fails_once_the_log_was_trimmed() {
    let h = hub(3, 8, 64);
    let epoch = h.attach(h.reserve("u").unwrap(), None).epoch.to_string();
    for i in 0..6 {
        h.publish("u", &read(&i.to_string()));
    }
    let r = h.attach(h.reserve("u").unwrap(), Some(&ResumeFrom { epoch: epoch.clone(), after: 1 }));
    assert!(!r.resumed);
    let r = h.attach(h.reserve("u").unwrap(), Some(&ResumeFrom { epoch, after: 3 }));
    assert!(r.resumed);
    assert_eq!(r.replay.len(), 3);
}

#[tokio::test]
async fn a_full_queue_marks_that_endpoint_behind_and_the_log_holds_the_rest() {
    let h = hub(100, 8, 4);
    let slow = h.attach(h.reserve("u").unwrap(), None);
    let mut fast = h.attach(h.reserve("u").unwrap(), None);
    let mut got = Vec::new();
    for i in 0..10 {
        h.publish("u", &read(&i.to_string()));
        got.extend(drain(&mut fast));
    }
    assert_eq!(got, (1..=10).collect::<Vec<_>>(), "the other endpoint is not slowed");
    match slow.outbox.ready().await {
        Ready::Behind(q) => assert_eq!(q.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]),
        other => panic!("{other:?}"),
    }
    assert_eq!(slow.outbox.requested(), None, "falling behind is no reason to close");
    let rest = h.retained("u", &slow.epoch, 4, 4 + 512).expect("the log holds the rest");
    assert_eq!(rest.iter().map(|e| e.seq).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
}

#[test]
fn the_endpoint_limit_counts_reservations_and_frees_on_drop() {
    let h = hub(10, 2, 4);
    let r1 = h.reserve("u").unwrap();
    let a = h.attach(h.reserve("u").unwrap(), None);
    assert!(h.reserve("u").is_err(), "one attached + one reserved = the limit");
    drop(r1);
    let r3 = h.reserve("u").unwrap();
    h.detach("u", a.id);
    let _r4 = h.reserve("u").unwrap();
    assert!(h.reserve("u").is_err());
    drop(r3);
    assert!(h.reserve("other").is_ok(), "the limit is per user");
}

#[tokio::test(start_paused = true)]
async fn sweep_retires_idle_logs_and_a_new_life_has_a_new_epoch() {
    let h = Hub::new(
        Retention { count: 10, age: Duration::from_secs(60), bytes: 1 << 30, node_bytes: 1 << 40 },
        4,
        4,
        Arc::new(Metrics::new()),
    );
    let a = h.attach(h.reserve("u").unwrap(), None);
    let old_epoch = a.epoch.clone();
    h.publish("u", &read("x"));
    h.detach("u", a.id);
    assert_eq!(h.sweep(), 0, "recent events keep the log");
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(h.sweep(), 1);
    let b = h.attach(
        h.reserve("u").unwrap(),
        Some(&ResumeFrom { epoch: old_epoch.to_string(), after: 1 }),
    );
    assert_ne!(b.epoch, old_epoch);
    assert!(!b.resumed);
    assert_eq!(b.head, 0);
}

#[tokio::test]
async fn a_waiting_endpoint_wakes_for_events_and_for_a_close() {
    let h = hub(10, 4, 8);
    let a = h.attach(h.reserve("u").unwrap(), None);
    let outbox = a.outbox.clone();
    let waiter = tokio::spawn(async move { outbox.ready().await });
    tokio::task::yield_now().await;
    h.publish("u", &read("x"));
    match tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap() {
        Ready::Events(q) => assert_eq!(q.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]),
        other => panic!("{other:?}"),
    }
    let outbox = a.outbox.clone();
    let waiter = tokio::spawn(async move { outbox.ready().await });
    tokio::task::yield_now().await;
    h.close_all(wire::close::DRAINING);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert!(matches!(r, Ready::Close(wire::close::DRAINING)));
}

#[test]
fn logs_are_held_to_their_bytes_and_the_node_to_its_budget() {
    let big = "x".repeat(10_000);
    let note = |h: &Hub, user: &str| h.publish(user, &read(&big));
    let h = Hub::new(
        Retention {
            count: 1000,
            age: Duration::from_secs(3600),
            bytes: 50_000,
            node_bytes: 120_000,
        },
        8,
        64,
        Arc::new(Metrics::new()),
    );
    for _ in 0..20 {
        note(&h, "a");
    }
    let a_bytes = h.log_bytes();
    assert!(a_bytes <= 50_000 && a_bytes > 30_000, "a's own cap: {a_bytes}");
    for _ in 0..20 {
        note(&h, "b");
    }
    assert!(h.log_bytes() <= 100_000);
    for _ in 0..20 {
        note(&h, "c");
    }
    let total = h.log_bytes();
    assert!(total <= 120_000, "the node's budget holds: {total}");
    assert!(h.retained("a", &h.attach(h.reserve("a").unwrap(), None).epoch, 17, 20).is_some());
    // What the logs hold goes back to zero when they are swept away.
    let retention = Retention { count: 0, age: Duration::ZERO, bytes: 0, node_bytes: 0 };
    let h2 = Hub::new(retention, 8, 64, Arc::new(Metrics::new()));
    note(&h2, "z");
    assert_eq!(h2.log_bytes(), 0, "nothing retained, nothing counted");
}

/// Publishes after a pause longer than a burst's gap, as a paced stream does.
fn paced(h: &Hub, user: &str, body: &EventBody) {
    std::thread::sleep(BURST_GAP + Duration::from_micros(100));
    h.publish(user, body);
}

/// A direct path that takes what it is told to and remembers what it took.
#[derive(Debug, Default)]
struct Taker {
    refuse: std::sync::atomic::AtomicBool,
    taken: Mutex<Vec<u64>>,
}

impl Direct for Taker {
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
        if self.refuse.load(Ordering::Relaxed) {
            return Offer { taken: 0, started: false };
        }
        self.taken.lock().extend(entries.iter().map(|e| e.seq));
        Offer { taken: entries.len(), started: false }
    }
}

/// An endpoint of user `u` whose direct path is a [`Taker`] (installed, not armed).
fn with_taker(h: &Hub) -> (Attachment, Arc<Taker>) {
    let a = h.attach(h.reserve("u").unwrap(), None);
    let taker = Arc::new(Taker::default());
    a.outbox.set_direct(taker.clone(), a.epoch.clone());
    (a, taker)
}

#[test]
fn the_direct_path_takes_events_only_while_the_endpoint_is_idle_and_in_order() {
    let h = hub(100, 8, 64);
    let (mut a, taker) = with_taker(&h);
    // Installed but not armed: the task has not said it is idle.
    paced(&h, "u", &read("1"));
    assert_eq!(drain(&mut a), [1]);
    a.outbox.arm(1);
    paced(&h, "u", &read("2"));
    paced(&h, "u", &read("3"));
    assert_eq!(*taker.taken.lock(), [2, 3]);
    assert_eq!(a.outbox.written(), 3);
    // A full socket: that event and every later one go to the task, even once the socket
    // has room again, until the task is idle and arms again.
    taker.refuse.store(true, Ordering::Relaxed);
    paced(&h, "u", &read("4"));
    taker.refuse.store(false, Ordering::Relaxed);
    paced(&h, "u", &read("5"));
    assert_eq!(drain(&mut a), [4, 5]);
    assert_eq!(*taker.taken.lock(), [2, 3]);
    a.outbox.arm(5);
    paced(&h, "u", &read("6"));
    assert_eq!(*taker.taken.lock(), [2, 3, 6]);
    // Arming with an older position does not move the stream back.
    a.outbox.arm(2);
    assert_eq!(a.outbox.written(), 6);
    // A close request disarms: nothing is written after it.
    a.outbox.close(wire::close::DRAINING);
    paced(&h, "u", &read("7"));
    a.outbox.arm(6);
    paced(&h, "u", &read("8"));
    assert_eq!(*taker.taken.lock(), [2, 3, 6]);
}

#[test]
fn an_event_out_of_order_goes_to_the_task_and_behind_disarms() {
    let h = hub(100, 8, 64);
    let (mut a, taker) = with_taker(&h);
    paced(&h, "u", &read("1"));
    // The task believes its client is at 0 while 1 waits in the queue: not armed.
    a.outbox.arm(0);
    paced(&h, "u", &read("2"));
    assert!(taker.taken.lock().is_empty());
    assert_eq!(drain(&mut a), [1, 2]);
    // Armed at 1 (the task wrote only 1 so far): 3 is not next, so it is queued.
    a.outbox.arm(1);
    paced(&h, "u", &read("3"));
    assert!(taker.taken.lock().is_empty());
    assert_eq!(drain(&mut a), [3]);
    a.outbox.arm(3);
    a.outbox.mark_behind();
    paced(&h, "u", &read("4"));
    assert!(taker.taken.lock().is_empty());
}

/// Takes two events whole and begins the third, as a socket with little room does.
#[derive(Debug, Default)]
struct Narrow {
    offered: Mutex<Vec<Vec<u64>>>,
}

impl Direct for Narrow {
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
        self.offered.lock().push(entries.iter().map(|e| e.seq).collect());
        let taken = entries.len().min(2);
        Offer { taken, started: entries.len() > 2 }
    }
}

#[tokio::test]
async fn a_run_of_events_is_offered_together_and_what_the_socket_left_is_queued_in_order() {
    let h = hub(100, 8, 64);
    let a = h.attach(h.reserve("u").unwrap(), None);
    let narrow = Arc::new(Narrow::default());
    a.outbox.set_direct(narrow.clone(), a.epoch.clone());
    a.outbox.arm(0);
    let events = [("notification.read", "{\"type\":\"notification.read\",\"id\":\"x\"}"); 5];
    assert_eq!(h.append_all("u", events.iter().copied()), (1, 5));
    assert_eq!(*narrow.offered.lock(), [vec![1, 2, 3, 4, 5]], "one offer for the run");
    // 1 and 2 went whole, 3 was begun (its rest is the wire's), 4 and 5 wait for the task.
    assert_eq!(a.outbox.written(), 3);
    match a.outbox.ready().await {
        Ready::Events(q) => assert_eq!(q.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]),
        other => panic!("{other:?}"),
    }
    // Not armed again until the task says it is idle.
    std::thread::sleep(BURST_GAP);
    h.append_all("u", events[..1].iter().copied());
    assert_eq!(narrow.offered.lock().len(), 1);
}

#[test]
fn a_burst_goes_through_the_queue_and_the_direct_path_resumes_after_it() {
    let h = hub(100, 8, 64);
    let (mut a, taker) = with_taker(&h);
    a.outbox.arm(0);
    paced(&h, "u", &read("1"));
    // Right behind it: a burst, written by the task in one batch.
    h.publish("u", &read("2"));
    h.publish("u", &read("3"));
    assert_eq!(*taker.taken.lock(), [1]);
    assert_eq!(drain(&mut a), [2, 3]);
    a.outbox.arm(3);
    paced(&h, "u", &read("4"));
    assert_eq!(*taker.taken.lock(), [1, 4]);
}
