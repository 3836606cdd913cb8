//! The task behaviour every store must show (part of [`crate::contract::run_all`]).

use serde_json::json;
use wire::task::{Artifact, Part, Task, TaskState};

use crate::{FinalTask, PutOutcome, StoreError, TaskCursor, TurnStore};

/// A terminal task for tests.
pub fn task(id: &str, user: &str, context: &str, updated_at_ms: i64, seq: u64) -> FinalTask {
    FinalTask {
        task: Task {
            task_id: id.into(),
            user_id: user.into(),
            context_id: context.into(),
            title: format!("title of {id} \u{0} é"),
            state: TaskState::Completed,
            message: Some("done".into()),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:01.000Z".into(),
            artifacts: Some(vec![
                Artifact {
                    artifact_id: "a1".into(),
                    name: Some("report".into()),
                    parts: vec![Part::Text { text: "x\u{0}y".into() }],
                },
                Artifact {
                    artifact_id: "a2".into(),
                    name: None,
                    parts: vec![Part::Data { data: json!({"k": [1, 2]}) }],
                },
            ]),
            metadata: json!({"m": 1}),
        },
        updated_at_ms,
        seq,
    }
}

pub async fn tasks_are_stored_once_and_paged(s: &dyn TurnStore) {
    let t = task("k1", "tu1", "c1", 1_000, 5);
    assert_eq!(s.put_task(&t).await.unwrap(), PutOutcome::Inserted);
    assert_eq!(s.put_task(&t).await.unwrap(), PutOutcome::AlreadyStored, "a retry is no-op");
    let mut other = t.clone();
    other.task.title = "else".into();
    assert!(matches!(s.put_task(&other).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.task("k1").await.unwrap().as_ref(), Some(&t), "artifacts and any text intact");
    assert!(s.task("nope").await.unwrap().is_none());

    // Same time: the seq breaks the tie; another user's and another context's are apart.
    s.put_task(&task("k2", "tu1", "c2", 1_000, 9)).await.unwrap();
    s.put_task(&task("k3", "tu1", "c1", 2_000, 1)).await.unwrap();
    s.put_task(&task("k4", "tu2", "c1", 3_000, 1)).await.unwrap();
    let ids = |v: Vec<FinalTask>| v.into_iter().map(|t| t.task.task_id).collect::<Vec<_>>();
    let all = s.task_page("tu1", None, 10, None).await.unwrap();
    assert!(all.iter().all(|t| t.task.artifacts.is_none()), "pages leave artifacts out");
    assert_eq!(ids(all), ["k3", "k2", "k1"]);
    let first = s.task_page("tu1", None, 2, None).await.unwrap();
    let after: TaskCursor = first[1].cursor();
    assert_eq!(ids(s.task_page("tu1", None, 2, Some(&after)).await.unwrap()), ["k1"]);
    assert_eq!(ids(s.task_page("tu1", Some("c1"), 10, None).await.unwrap()), ["k3", "k1"]);
    let c = s.task_page("tu1", Some("c1"), 1, None).await.unwrap()[0].cursor();
    assert_eq!(ids(s.task_page("tu1", Some("c1"), 10, Some(&c)).await.unwrap()), ["k1"]);
    assert_eq!(ids(s.task_page("tu2", None, 10, None).await.unwrap()), ["k4"]);

    // Retention takes ended tasks older than the cutoff, with their artifacts.
    s.purge_before(1_500).await.unwrap();
    assert!(s.task("k1").await.unwrap().is_none());
    assert_eq!(ids(s.task_page("tu1", None, 10, None).await.unwrap()), ["k3"]);
    s.put_task(&t).await.unwrap();
    assert_eq!(s.task("k1").await.unwrap().unwrap().task.artifacts.unwrap().len(), 2);
}
