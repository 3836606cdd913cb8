//! The durable outbox and the persister that drains it, against the real embedded outbox and
//! real stores: a PostgreSQL taken down and brought back through a proxy, and the embedded store.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use store_client::{
    EmbeddedOutbox, EmbeddedStore, Outbox, PersistCounters, Persister, PostgresStore, RetryPolicy,
    TurnStore, contract,
};
use support::{DropSchema, database_url, proxied, unique};
use tokio_util::sync::CancellationToken;

fn quick() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(50),
        max: Duration::from_millis(300),
        lease: Duration::from_secs(5),
        put_timeout: Duration::from_secs(2),
        poll: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[tokio::test]
async fn the_embedded_outbox_holds_one_entry_per_turn_leases_it_and_survives_a_reopen() {
    let dir = std::env::temp_dir().join(unique("outbox"));
    let outbox = EmbeddedOutbox::open(&dir).await.unwrap();
    let t = contract::turn("ob-1", "c", "u", 1);
    assert!(outbox.enqueue(&t).await.unwrap());
    assert!(!outbox.enqueue(&t).await.unwrap(), "a repeated end is not a second entry");
    outbox.enqueue(&contract::turn("ob-2", "c", "u", 2)).await.unwrap();
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.depth, 2);
    assert!(stats.oldest_enqueued_ms.is_some());

    let claimed = outbox.claim(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].item, store_client::Final::Turn(t.clone()), "the whole turn comes back");

    outbox.reschedule("ob-1", 1, Duration::from_secs(3600), "store down").await.unwrap();
    assert_eq!(outbox.claim(10, Duration::ZERO).await.unwrap().len(), 1, "ob-1 backs off");
    // A restart (a crash while one backs off): what waited is still there, and all of it is
    // due at once, its failures remembered.
    drop(outbox);
    let outbox = EmbeddedOutbox::open(&dir).await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().depth, 2);
    let again = outbox.claim(10, Duration::from_secs(60)).await.unwrap();
    assert_eq!(again.len(), 2, "a previous life's backoff is void");
    assert_eq!(again.iter().find(|p| p.item.key() == "ob-1").unwrap().attempts, 1);
    outbox.complete("ob-1").await.unwrap();
    outbox.set_aside("ob-2", "conflict").await.unwrap();
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.depth, stats.set_aside, stats.oldest_enqueued_ms), (0, 1, None));
    std::fs::remove_dir_all(&dir).ok();
}

/// Turns end while PostgreSQL is unreachable: they wait, are retried with backoff, and once it is
/// back every one is stored exactly once.
#[tokio::test]
async fn every_turn_is_stored_exactly_once_across_a_postgres_outage() {
    let url = database_url();
    let schema = unique("gwoutage");
    let _cleanup = DropSchema { url: url.clone(), schema: schema.clone() };
    let (proxy, via_proxy) = proxied(&url).await;
    // Opened while the database is away: it migrates once it answers.
    proxy.set_up(false);
    let store: Arc<dyn TurnStore> =
        Arc::new(PostgresStore::open(&via_proxy, Some(&schema)).unwrap());
    assert!(store.ping().await.unwrap_err().is_retryable());
    let dir = std::env::temp_dir().join(unique("outbox"));
    let outbox = Arc::new(EmbeddedOutbox::open(&dir).await.unwrap());
    let persister = Arc::new(Persister::new(outbox.clone(), store.clone(), quick()));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (p, s) = (persister.clone(), stop.clone());
        async move { p.run(s).await }
    });

    for i in 0..20 {
        outbox.enqueue(&contract::turn(&format!("out-{i}"), "outage", "u", i)).await.unwrap();
        persister.wake();
    }
    let c: &PersistCounters = &persister.counters;
    until("retries while the store is down", async || count(&c.retries) >= 20).await;
    assert_eq!(count(&c.stored), 0);
    assert_eq!(outbox.stats().await.unwrap().depth, 20, "nothing lost, nothing dropped");

    proxy.set_up(true);
    until("the backlog drains", async || outbox.stats().await.unwrap().depth == 0).await;
    assert_eq!(count(&c.stored), 20);
    let page = store.page("outage", None, 100, None).await.unwrap();
    assert_eq!(page.turns.len(), 20, "each turn once");

    // The same turn enqueued again (a replay after a crash): a no-op at the store.
    outbox.enqueue(&contract::turn("out-3", "outage", "u", 3)).await.unwrap();
    persister.wake();
    until("the repeat is drained", async || count(&c.already_stored) == 1).await;
    assert_eq!(store.page("outage", None, 100, None).await.unwrap().turns.len(), 20);

    stop.cancel();
    task.await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// A turn the store refuses for good (another turn holds its id) is set aside and counted, and
/// does not block the others.
#[tokio::test]
async fn a_conflicting_turn_is_set_aside_and_the_rest_flow() {
    let dir = std::env::temp_dir().join(unique("outbox"));
    let store = Arc::new(EmbeddedStore::open(&dir.join("store")).await.unwrap());
    let outbox = Arc::new(EmbeddedOutbox::open(&dir).await.unwrap());
    let mut other = contract::turn("clash", "c", "u", 1);
    other.turn.text = "first".into();
    store.put(&other).await.unwrap();
    outbox.enqueue(&contract::turn("clash", "c", "u", 1)).await.unwrap();
    outbox.enqueue(&contract::turn("fine", "c", "u", 2)).await.unwrap();
    let persister = Persister::new(outbox.clone(), store.clone(), quick());
    let c = &persister.counters;
    until("both handled", async || {
        persister.pass().await;
        count(&c.set_aside) + count(&c.stored) == 2
    })
    .await;
    assert_eq!(count(&persister.counters.set_aside), 1);
    assert_eq!(count(&persister.counters.stored), 1);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.depth, stats.set_aside), (0, 1));
    let kept = store.page("c", None, 10, None).await.unwrap();
    assert_eq!(kept.turns.iter().find(|t| t.turn_id == "clash").unwrap().text, "first");
    std::fs::remove_dir_all(&dir).ok();
}
