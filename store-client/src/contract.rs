//! The behaviour every [`TurnStore`] must show; each backend's tests call [`run_all`] on a
//! fresh, empty store.

use serde_json::json;
use wire::TurnStatus;

use crate::{Cursor, FinalTurn, PutOutcome, StoreError, Trace, TurnRecord, TurnStore};

/// A completed turn for tests.
pub fn turn(id: &str, conversation: &str, user: &str, created_at_ms: i64) -> FinalTurn {
    FinalTurn {
        turn: TurnRecord {
            turn_id: id.into(),
            conversation_id: conversation.into(),
            user_id: user.into(),
            status: TurnStatus::Completed,
            text: format!("text of {id} · é"),
            truncated: false,
            created_at_ms,
            completed_at_ms: created_at_ms + 10,
            meta: json!({"model": "m1"}),
        },
        traces: vec![
            Trace { kind: "reasoning".into(), data: json!({"n": 1}) },
            Trace { kind: "tool_call".into(), data: json!(["x"]) },
        ],
        trace: None,
    }
}

pub async fn run_all(store: &dyn TurnStore) {
    crate::task_contract::tasks_are_stored_once_and_paged(store).await;
    idempotent_put(store).await;
    paging_is_newest_first_and_stable_under_inserts(store).await;
    users_see_their_own(store).await;
    traces_are_kept_apart(store).await;
    large_text_round_trips(store).await;
    any_text_round_trips(store).await;
    a_delete_is_scoped_to_its_user(store).await;
    delete_and_purge(store).await;
    concurrent_writers_all_succeed(store).await;
    preferences_are_kept_per_user_and_replaced_whole(store).await;
    the_inbox_pages_counts_and_marks(store).await;
    concurrent_inbox_additions_count_each_once(store).await;
    the_push_queue_leases_retries_and_finds_what_to_retract(store).await;
    store.ping().await.unwrap();
}

/// Outbox workers (several per node, several nodes) write at once: none is refused for it.
pub async fn concurrent_writers_all_succeed(s: &dyn TurnStore) {
    let puts = (0..32).map(|i| {
        let t = turn(&format!("cw-{i}"), "cw", "u", 50_000 + i);
        async move { s.put(&t).await }
    });
    for r in futures_util::future::join_all(puts).await {
        assert_eq!(r.unwrap(), PutOutcome::Inserted);
    }
    assert_eq!(s.page("cw", None, 100, None).await.unwrap().turns.len(), 32);
}

pub async fn idempotent_put(s: &dyn TurnStore) {
    let t = turn("ip-1", "ip", "u", 1_000);
    assert_eq!(s.put(&t).await.unwrap(), PutOutcome::Inserted);
    assert_eq!(s.put(&t).await.unwrap(), PutOutcome::AlreadyStored, "a repeat is a no-op");
    let mut other = t.clone();
    other.turn.text = "something else".into();
    assert!(matches!(s.put(&other).await, Err(StoreError::Conflict(_))), "never overwritten");
    let page = s.page("ip", None, 10, None).await.unwrap();
    assert_eq!(page.turns.len(), 1, "one row");
    assert_eq!(page.turns[0].text, t.turn.text, "the first content stays");
    assert_eq!(s.traces("ip-1").await.unwrap().unwrap().1.len(), 2, "traces stored once");
}

pub async fn paging_is_newest_first_and_stable_under_inserts(s: &dyn TurnStore) {
    for i in 0..25 {
        s.put(&turn(&format!("pg-{i:02}"), "pg", "u", 10_000 + i * 10)).await.unwrap();
    }
    // Two turns at the same millisecond are ordered by id.
    s.put(&turn("pg-same-a", "pg", "u", 10_100)).await.unwrap();
    let first = s.page("pg", None, 10, None).await.unwrap();
    let ids = |p: &crate::Page| p.turns.iter().map(|t| t.turn_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&first)[..3], ["pg-24", "pg-23", "pg-22"]);
    let cursor = first.next.clone().expect("more pages");
    // Newer turns arrive between page requests: the cursor still continues where it was.
    for i in 0..5 {
        s.put(&turn(&format!("pg-new-{i}"), "pg", "u", 20_000 + i)).await.unwrap();
    }
    let opaque = Cursor::decode(&cursor.encode()).unwrap();
    let second = s.page("pg", None, 10, Some(&opaque)).await.unwrap();
    let third = s.page("pg", None, 10, second.next.as_ref()).await.unwrap();
    assert!(third.next.is_none(), "the last page says so");
    let mut all = ids(&first);
    all.extend(ids(&second));
    all.extend(ids(&third));
    assert_eq!(all.len(), 26, "every older turn once: {all:?}");
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 26, "no duplicates across pages");
    assert!(all.iter().position(|i| i == "pg-same-a") < all.iter().position(|i| i == "pg-10"));
    assert!(s.page("pg", None, 0, None).await.is_err());
    assert!(s.page("nobody", None, 5, None).await.unwrap().turns.is_empty());
}

pub async fn users_see_their_own(s: &dyn TurnStore) {
    s.put(&turn("own-a", "own", "alice", 1)).await.unwrap();
    s.put(&turn("own-b", "own", "bob", 2)).await.unwrap();
    let alice = s.page("own", Some("alice"), 10, None).await.unwrap();
    assert_eq!(alice.turns.len(), 1);
    assert_eq!(alice.turns[0].user_id, "alice");
    assert_eq!(s.page("own", None, 10, None).await.unwrap().turns.len(), 2, "admin sees all");
}

pub async fn traces_are_kept_apart(s: &dyn TurnStore) {
    let t = turn("tr-1", "tr", "u", 5);
    s.put(&t).await.unwrap();
    let rec = &s.page("tr", None, 1, None).await.unwrap().turns[0];
    assert_eq!(rec.meta, json!({"model": "m1"}));
    assert_eq!(rec.status, TurnStatus::Completed);
    let (user, traces) = s.traces("tr-1").await.unwrap().unwrap();
    assert_eq!(user, "u");
    assert_eq!(traces, t.traces, "in order, intact");
    assert!(s.traces("missing").await.unwrap().is_none());
}

pub async fn large_text_round_trips(s: &dyn TurnStore) {
    let mut big = turn("big-1", "big", "u", 7);
    big.turn.text = "é".repeat(2 * 1024 * 1024 + 1); // 4 MiB + 2 bytes of two-byte characters
    let mut limited = big.clone();
    limited.limit_text(4 * 1024 * 1024 + 1);
    assert!(limited.turn.truncated);
    assert_eq!(limited.turn.text.len(), 4 * 1024 * 1024, "cut at a character boundary");
    big.turn.text.truncate(4 * 1024 * 1024);
    s.put(&big).await.unwrap();
    let got = &s.page("big", None, 1, None).await.unwrap().turns[0];
    assert_eq!(got.text.len(), 4 * 1024 * 1024);
    assert!(got.text == big.turn.text, "4 MiB intact");
    assert!(!got.truncated);
    limited.turn.turn_id = "big-2".into();
    s.put(&limited).await.unwrap();
    let got = s.page("big", None, 1, None).await.unwrap();
    assert!(got.turns[0].truncated, "the flag is stored");
}

pub async fn delete_and_purge(s: &dyn TurnStore) {
    s.put(&turn("del-1", "del", "u", 100)).await.unwrap();
    s.put(&turn("del-2", "del", "u", 200)).await.unwrap();
    s.put(&turn("keep-1", "keep", "u", 300)).await.unwrap();
    assert_eq!(s.delete_conversation("del", Some("u"), 250).await.unwrap(), 2);
    assert!(s.page("del", None, 10, None).await.unwrap().turns.is_empty());
    assert!(s.traces("del-1").await.unwrap().is_none());
    // A turn that began before the deletion and arrives late (from an outbox) stays deleted; one
    // that began after it is a new life of the conversation.
    assert_eq!(s.put(&turn("del-late", "del", "u", 240)).await.unwrap(), PutOutcome::Discarded);
    assert_eq!(s.put(&turn("del-new", "del", "u", 260)).await.unwrap(), PutOutcome::Inserted);
    assert_eq!(s.page("del", None, 10, None).await.unwrap().turns.len(), 1);
    // Retention: everything completed before the cutoff goes, with its traces.
    let purged = s.purge_before(250).await.unwrap();
    assert!(purged >= 1);
    assert!(s.traces("tr-1").await.unwrap().is_none(), "old turns of other conversations too");
    assert!(s.traces("ip-1").await.unwrap().is_some(), "newer ones stay");
    assert_eq!(s.page("keep", None, 10, None).await.unwrap().turns.len(), 1);
}

/// Two users' turns under one conversation id: a user's delete takes only their own turns,
/// stored or on their way; an operator's takes everyone's.
pub async fn a_delete_is_scoped_to_its_user(s: &dyn TurnStore) {
    s.put(&turn("sc-a1", "sc", "alice", 100)).await.unwrap();
    s.put(&turn("sc-b1", "sc", "bob", 200)).await.unwrap();
    assert_eq!(s.delete_conversation("sc", Some("bob"), 300).await.unwrap(), 1);
    let left = s.page("sc", None, 10, None).await.unwrap().turns;
    assert_eq!(left.iter().map(|t| t.turn_id.as_str()).collect::<Vec<_>>(), ["sc-a1"]);
    assert!(s.traces("sc-a1").await.unwrap().is_some(), "alice's traces stay");
    assert_eq!(s.put(&turn("sc-a2", "sc", "alice", 250)).await.unwrap(), PutOutcome::Inserted);
    assert_eq!(s.put(&turn("sc-b2", "sc", "bob", 250)).await.unwrap(), PutOutcome::Discarded);
    assert_eq!(s.delete_conversation("sc", Some("nobody"), 300).await.unwrap(), 0);
    assert_eq!(s.delete_conversation("sc", None, 400).await.unwrap(), 2, "an operator: all");
    assert_eq!(s.put(&turn("sc-a3", "sc", "alice", 350)).await.unwrap(), PutOutcome::Discarded);
}

/// Any valid string comes back as it went in, NUL and other control characters included
/// (PostgreSQL's TEXT refuses NUL).
pub async fn any_text_round_trips(s: &dyn TurnStore) {
    let mut t = turn("nul-1", "nul", "u", 1);
    t.turn.text = "a\u{0}b\u{1}\\u0000\"\u{0}".into();
    t.turn.meta = json!({"k": "v\u{0}"});
    t.traces[0].data = json!(["\u{0}"]);
    assert_eq!(s.put(&t).await.unwrap(), PutOutcome::Inserted);
    assert_eq!(s.put(&t).await.unwrap(), PutOutcome::AlreadyStored);
    let got = &s.page("nul", None, 1, None).await.unwrap().turns[0];
    assert_eq!(got, &t.turn);
    assert_eq!(s.traces("nul-1").await.unwrap().unwrap().1, t.traces);
    let mut plain = turn("nul-2", "nul", "u", 2);
    plain.turn.text = "\"quoted\" and \\u0000 spelled out".into();
    s.put(&plain).await.unwrap();
    assert_eq!(s.page("nul", None, 1, None).await.unwrap().turns[0].text, plain.turn.text);
}

pub async fn preferences_are_kept_per_user_and_replaced_whole(s: &dyn TurnStore) {
    let (a, b) = (format!("pa-{}", rand_tag()), format!("pb-{}", rand_tag()));
    assert_eq!(s.preferences(&a).await.unwrap(), None);
    s.put_preferences(&a, r#"{"v":1}"#).await.unwrap();
    s.put_preferences(&b, r#"{"v":2}"#).await.unwrap();
    s.put_preferences(&a, r#"{"v":3}"#).await.unwrap();
    assert_eq!(s.preferences(&a).await.unwrap().as_deref(), Some(r#"{"v":3}"#));
    assert_eq!(s.preferences(&b).await.unwrap().as_deref(), Some(r#"{"v":2}"#));
}

fn rand_tag() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

fn note(user: &str, id: &str, category: &str, at: i64) -> crate::InboxRecord {
    crate::InboxRecord {
        id: id.into(),
        user_id: user.into(),
        category: category.into(),
        priority: "normal".into(),
        title: format!("t-{id}"),
        body: "b".into(),
        data: serde_json::json!({"k": id}),
        created_at_ms: at,
        disposition: "delivered".into(),
        seen_at_ms: None,
        read_at_ms: None,
        archived_at_ms: None,
    }
}

/// A storm of additions at once (the embedded store commits them in batches): each fresh one is
/// answered with a distinct count "with it" (a repeat with the counts as they are), a repeated id or a suppressed (archived) one adds
/// nothing, and the counts end right for each user.
pub async fn concurrent_inbox_additions_count_each_once(s: &dyn TurnStore) {
    let (a, b) = (format!("ca-{}", rand_tag()), format!("cb-{}", rand_tag()));
    let mut notes = Vec::new();
    for i in 0..300 {
        let user = if i % 3 == 0 { &b } else { &a };
        let mut n = note(user, &format!("{user}-{i}"), "c", 10_000 + i);
        if i % 10 == 9 {
            n.archived_at_ms = Some(10_000 + i);
        }
        notes.push(n);
    }
    // Repeats of ids already in the storm, some in the same batch as the first.
    let repeats: Vec<_> = (0..30).map(|i| notes[i * 10].clone()).collect();
    notes.extend(repeats);
    let adds = notes.iter().map(|n| async move { (n.user_id.clone(), s.inbox_add(n).await) });
    let answers = futures_util::future::join_all(adds).await;
    let fresh = |u: &str| {
        let of_u = notes[..300].iter().filter(|n| n.user_id == u && n.archived_at_ms.is_none());
        of_u.count() as u64
    };
    // Whichever of an id's copies came first added it; together they were answered 1..=N.
    let mut seen: Vec<u64> = notes
        .iter()
        .zip(&answers)
        .filter(|(n, _)| n.user_id == a && n.archived_at_ms.is_none())
        .map(|(_, (_, r))| r.as_ref().unwrap().0)
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=fresh(&a)).collect::<Vec<_>>(), "each addition has its own count");
    assert_eq!(s.inbox_counts(&a).await.unwrap(), (fresh(&a), fresh(&a)));
    assert_eq!(s.inbox_counts(&b).await.unwrap(), (fresh(&b), fresh(&b)));
    let all = s.inbox_page(&a, crate::InboxStatus::All, None, 200, None).await.unwrap();
    assert_eq!(all.len() as u64, fresh(&a), "one row per id, archived ones apart");
}

pub async fn the_inbox_pages_counts_and_marks(s: &dyn TurnStore) {
    use crate::{InboxStatus as S, Mark, Marked};
    let (u, other) = (format!("iu-{}", rand_tag()), format!("io-{}", rand_tag()));
    for i in 0..10 {
        let cat = if i % 2 == 0 { "even" } else { "odd" };
        let counts = s.inbox_add(&note(&u, &format!("{u}-{i}"), cat, 1_000 + i)).await.unwrap();
        assert_eq!(counts, (i as u64 + 1, i as u64 + 1), "the counts with it");
    }
    s.inbox_add(&note(&u, &format!("{u}-0"), "even", 1_000)).await.unwrap(); // a repeat: nothing
    s.inbox_add(&note(&other, &format!("{other}-0"), "even", 1_000)).await.unwrap();
    assert_eq!(s.inbox_counts(&u).await.unwrap(), (10, 10));

    let first = s.inbox_page(&u, S::All, None, 4, None).await.unwrap();
    let ids: Vec<_> = first.iter().map(|n| n.id.clone()).collect();
    assert_eq!(ids, (6..10).rev().map(|i| format!("{u}-{i}")).collect::<Vec<_>>(), "newest first");
    assert_eq!(first[0].data, serde_json::json!({"k": format!("{u}-9")}));
    let last = first.last().unwrap();
    let next = s
        .inbox_page(&u, S::All, None, 100, Some((last.created_at_ms, last.id.clone())))
        .await
        .unwrap();
    assert_eq!(next.len(), 6, "the rest, none twice");
    let odd = s.inbox_page(&u, S::All, Some("odd"), 100, None).await.unwrap();
    assert_eq!(odd.len(), 5);

    let two = [format!("{u}-1"), format!("{u}-2"), format!("{other}-0"), "nope".into()];
    assert_eq!(
        s.inbox_mark(&u, Marked::Ids(&two), Mark::Read, 5_000).await.unwrap(),
        2,
        "foreign and unknown ids ignored"
    );
    assert_eq!(
        s.inbox_mark(&u, Marked::Ids(&two), Mark::Read, 5_001).await.unwrap(),
        0,
        "already read"
    );
    assert_eq!(s.inbox_counts(&u).await.unwrap(), (8, 8), "read also sets seen");
    assert_eq!(s.inbox_counts(&other).await.unwrap(), (1, 1));
    assert_eq!(s.inbox_mark(&u, Marked::Ids(&two[..1]), Mark::Unread, 5_002).await.unwrap(), 1);
    assert_eq!(s.inbox_counts(&u).await.unwrap(), (9, 8), "unread clears only read_at");
    let seen = s.inbox_mark(&u, Marked::CreatedBefore(1_005), Mark::Seen, 6_000).await.unwrap();
    assert_eq!(seen, 3, "0, 3 and 4: 1 and 2 were seen when read");
    assert_eq!(s.inbox_page(&u, S::Unseen, None, 100, None).await.unwrap().len(), 5);
    assert_eq!(
        s.inbox_mark(&u, Marked::CreatedBefore(1_003), Mark::Archived, 7_000).await.unwrap(),
        3
    );
    assert_eq!(s.inbox_page(&u, S::Archived, None, 100, None).await.unwrap().len(), 3);
    assert_eq!(s.inbox_page(&u, S::All, None, 100, None).await.unwrap().len(), 7);
    assert_eq!(s.inbox_page(&u, S::Read, None, 100, None).await.unwrap().len(), 0);
    s.inbox_remove(&u, &format!("{u}-9")).await.unwrap();
    assert_eq!(s.inbox_page(&u, S::All, None, 100, None).await.unwrap().len(), 6);
    assert!(s.inbox_purge(1_005).await.unwrap() >= 5);
    assert_eq!(s.inbox_page(&u, S::All, None, 100, None).await.unwrap().len(), 4);
}

pub async fn the_push_queue_leases_retries_and_finds_what_to_retract(s: &dyn TurnStore) {
    use crate::{Mark, Marked, PushEntry, PushResult};
    let u = format!("pu-{}", rand_tag());
    let now = 10_000_000_000_000i64; // far ahead: other checks' entries are due before it
    let key = format!("k-{u}");
    let e = PushEntry {
        key: key.clone(),
        user_id: u.clone(),
        kind: "notification".into(),
        notification_id: Some(format!("{u}-n")),
        body: "{}".into(),
        attempts: 0,
        created_at_ms: now,
    };
    s.push_enqueue(&e).await.unwrap();
    s.push_enqueue(&e).await.unwrap(); // the same key: nothing
    let mine = |v: Vec<PushEntry>| v.into_iter().filter(|p| p.user_id == u).collect::<Vec<_>>();
    let got = mine(s.push_claim(now, 30_000, 100).await.unwrap());
    assert_eq!(got.len(), 1);
    assert!(mine(s.push_claim(now + 1, 30_000, 100).await.unwrap()).is_empty(), "leased");
    s.push_retry(&key, 1, now + 5).await.unwrap();
    let again = mine(s.push_claim(now + 5, 30_000, 100).await.unwrap());
    assert_eq!((again.len(), again[0].attempts, again[0].key.as_str()), (1, 1, key.as_str()));
    s.push_done(&key, PushResult::Sent).await.unwrap();
    assert!(
        mine(s.push_claim(now + 1_000_000, 30_000, 100).await.unwrap()).is_empty(),
        "sent is final"
    );
    assert!(s.push_take_retractable(&u).await.unwrap().is_empty(), "not read yet");
    s.inbox_add(&note(&u, &format!("{u}-n"), "c", now)).await.unwrap();
    s.inbox_mark(&u, Marked::Ids(&[format!("{u}-n")]), Mark::Read, now).await.unwrap();
    assert_eq!(s.push_take_retractable(&u).await.unwrap(), vec![format!("{u}-n")]);
    assert!(s.push_take_retractable(&u).await.unwrap().is_empty(), "retracted once");
}
