//! Log rules checked on every backplane (part of [`super::contract::run_all`]) with many
//! appends at once, as a busy node makes them (in Redis mode they share script calls): each
//! user's seqs stay consecutive and whole, a condition raced on holds for exactly one, and a
//! run of events appended together arrives together and in order.

use futures_util::future::join_all;
use wire::EventBody;

use super::contract::{Endpoint, Fixture, seqs, unique};
use crate::backplane::record::{Append, Event, Expect, Outcome};

fn note(title: &str) -> Event {
    Event::of(&EventBody::Notification {
        id: title.into(),
        category: "c".into(),
        priority: wire::Priority::Normal,
        title: title.into(),
        body: String::new(),
        data: serde_json::Value::Null,
        created_at: "2026-11-30T00:00:00Z".into(),
        unread_count: None,
    })
}

pub async fn appends_of_many_users_at_once_keep_each_log_whole(fx: Fixture) {
    let users: Vec<String> = (0..12).map(|_| unique("many")).collect();
    let mut devices = Vec::new();
    for u in &users {
        devices.push(Endpoint::attach(&fx.b, u, None).await);
    }
    // Per user: five appends racing to create one record (one wins), eight plain ones, and
    // one of three events together; all sent at once, from both nodes.
    let mut calls = Vec::new();
    for u in &users {
        for i in 0..5 {
            let mut a = Append::to(u, "r", Expect::Absent, vec![note(&format!("claim{i}"))]);
            a.set = vec![("who", i.to_string())];
            calls.push((u.clone(), true, a));
        }
        for i in 0..8 {
            calls.push((u.clone(), false, Append::events(u, vec![note(&format!("n{i}"))])));
        }
        let run = (0..3).map(|k| note(&format!("run{k}"))).collect();
        calls.push((u.clone(), false, Append::events(u, run)));
    }
    let sent = calls.into_iter().enumerate().map(|(i, (u, claim, a))| {
        let node = if i % 2 == 0 { fx.a.clone() } else { fx.b.clone() };
        async move { (u, claim, node.backplane.append_if(a).await.expect("appended")) }
    });
    let outcomes = join_all(sent).await;
    for (k, u) in users.iter().enumerate() {
        let mine = outcomes.iter().filter(|(who, ..)| who == u);
        let won = mine.clone().filter(|(_, claim, o)| *claim && is_appended(o)).count();
        assert_eq!(won, 1, "{u}: exactly one of the racing creates wins");
        let mut got: Vec<u64> = mine
            .filter_map(|(_, _, o)| match o {
                Outcome::Appended { first, last, .. } => Some(*first..=*last),
                Outcome::Refused(_) => None,
            })
            .flatten()
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..=12).collect::<Vec<_>>(), "{u}: each seq given once, none skipped");
        let seen = devices[k].take(12).await;
        assert_eq!(seqs(&seen), (1..=12).collect::<Vec<_>>(), "{u}: delivered whole, in order");
        let titles: Vec<String> = seen.iter().filter_map(title).collect();
        let at = titles.iter().position(|t| t == "run0").expect("the run arrived");
        assert_eq!(titles[at..at + 3], ["run0", "run1", "run2"], "{u}: a run stays together");
    }
}

fn is_appended(o: &Outcome) -> bool {
    matches!(o, Outcome::Appended { .. })
}

fn title(e: &wire::LogEvent) -> Option<String> {
    match &e.body {
        EventBody::Notification { title, .. } => Some(title.clone()),
        _ => None,
    }
}
