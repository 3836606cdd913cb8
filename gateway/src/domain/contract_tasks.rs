//! The task rules checked on every backplane (part of [`super::contract::run_all`]): one task
//! whichever node is asked, one terminal state, one outbox entry with every chunk.

use serde_json::json;
use store_client::Final;
use wire::EventBody;
use wire::task::{CreateTask, TaskItem, TaskState};

use super::TaskError;
use super::contract::{Endpoint, Fixture, unique};
use super::tasks::Which;

fn new_task(user: &str, ctx: &str) -> CreateTask {
    CreateTask {
        user_id: user.into(),
        context_id: ctx.into(),
        title: "report".into(),
        task_id: None,
        state: None,
        metadata: Some(json!({"k": 1})),
    }
}

fn item(v: serde_json::Value) -> TaskItem {
    serde_json::from_value(v).expect("a task item")
}

fn chunk(text: &str) -> TaskItem {
    item(json!({"artifact":{"artifact_id":"a","parts":[{"text":text}],"append":true}}))
}

/// The terminal task waiting in the outbox.
async fn outboxed(fx: &Fixture, task_id: &str) -> store_client::FinalTask {
    let pending = fx.outbox.claim(100, std::time::Duration::from_secs(30)).await.unwrap();
    let mut tasks = pending.into_iter().filter_map(|p| match p.item {
        Final::Task(t) if t.task.task_id == task_id => Some(t),
        _ => None,
    });
    let t = tasks.next().expect("the task waits in the outbox");
    assert!(tasks.next().is_none(), "once");
    t
}

pub async fn a_task_is_one_on_every_node(fx: Fixture) {
    let u = unique("tu");
    let mut device = Endpoint::attach(&fx.b, &u, None).await;
    let (created, fresh) = fx.a.tasks.create(new_task(&u, "c"), "k1".into()).await.unwrap();
    assert!(fresh);
    let (again, fresh) = fx.b.tasks.create(new_task(&u, "c"), "k1".into()).await.unwrap();
    assert_eq!((again.seq, fresh), (created.seq, false), "idempotent on every node");
    let other = fx.b.tasks.create(new_task(&unique("x"), "c"), "k1".into()).await;
    assert!(matches!(other, Err(TaskError::Exists(_))), "{other:?}");

    let a =
        fx.b.tasks.apply("k1", vec![item(json!({"status":{"state":"working"}})), chunk("x")]).await;
    assert_eq!((a.accepted, a.refused), (2, None));
    let a = fx.a.tasks.apply("k1", vec![chunk("y")]).await;
    assert_eq!(a.accepted, 1);
    let (snap, as_of) = fx.b.tasks.snapshot(&u, "k1").await.unwrap();
    assert_eq!(snap.state, TaskState::Working);
    assert_eq!(snap.artifacts.unwrap()[0].parts.len(), 2);
    assert_eq!(as_of, a.last_seq.unwrap());
    assert!(matches!(fx.a.tasks.snapshot("someone", "k1").await, Err(TaskError::NotFound(_))));

    let (listed, _) = fx.a.tasks.list(&u, Which::Active, None, 10, None).await.unwrap();
    assert_eq!(listed.len(), 1, "the hub of every node lists it");
    let done =
        fx.a.tasks
            .apply("k1", vec![item(json!({"status":{"state":"completed"}})), chunk("z")])
            .await;
    assert_eq!((done.accepted, done.refused), (1, Some(TaskError::Ended("k1".into()))));
    let stored = outboxed(&fx, "k1").await;
    assert_eq!(stored.task.state, TaskState::Completed);
    assert_eq!(stored.task.artifacts.as_ref().unwrap()[0].parts.len(), 2);
    assert_eq!(stored.seq, created.seq, "its place in the hub is its first seq");
    let (ended, _) = fx.b.tasks.list(&u, Which::Terminal, None, 10, None).await.unwrap();
    assert_eq!(ended.len(), 1, "listed until the store has it");
    let seen = device.take(5).await;
    assert_eq!(seen.last().map(|e| e.body.kind()), Some("task.status"));
}

/// The per-user cap counts tasks not yet stored: ended and stored ones leave room.
pub async fn the_open_task_cap_frees_as_tasks_are_stored(fx: Fixture) {
    let u = unique("cap");
    let max = 100; // the fixture's max_open
    for i in 0..max {
        fx.a.tasks.create(new_task(&u, "c"), format!("c{i}")).await.unwrap();
    }
    let over = fx.b.tasks.create(new_task(&u, "c"), "one-more".into()).await;
    assert!(matches!(over, Err(TaskError::TooMany(_))), "{over:?}");
    // One ends and is stored: there is room again.
    fx.a.tasks.apply("c0", vec![item(json!({"status":{"state":"completed"}}))]).await;
    let done = outboxed(&fx, "c0").await;
    fx.b.tasks.store().put_task(&done).await.unwrap();
    assert!(fx.b.tasks.create(new_task(&u, "c"), "one-more".into()).await.is_ok());
}

pub async fn a_cancel_racing_artifacts_ends_the_task_once(fx: Fixture) {
    let u = unique("tr");
    fx.a.tasks.create(new_task(&u, "c"), "race".into()).await.unwrap();
    let mut device = Endpoint::attach(&fx.a, &u, None).await;
    let tasks = fx.b.tasks.clone();
    let producer = tokio::spawn(async move {
        let mut sent = 0u64;
        for i in 0..400 {
            let a = tasks.apply("race", vec![chunk(&format!("{i},"))]).await;
            sent += a.accepted;
            if a.refused.is_some() {
                break;
            }
        }
        sent
    });
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let canceled = fx.a.tasks.cancel(&u, "race").await.unwrap();
    assert_eq!(canceled.state, TaskState::Canceled);
    let sent = producer.await.unwrap();
    let seen = device.take(sent as usize + 1).await;
    assert!(matches!(
        seen.last().map(|e| &e.body),
        Some(EventBody::TaskStatus { state: TaskState::Canceled, .. })
    ));
    let stored = outboxed(&fx, "race").await;
    let parts = stored.task.artifacts.unwrap().first().map_or(0, |a| a.parts.len());
    assert_eq!(parts as u64, sent, "the stored task has every chunk published before the end");
    assert!(matches!(fx.b.tasks.cancel(&u, "race").await, Err(TaskError::NotCancelable(_))));
}
