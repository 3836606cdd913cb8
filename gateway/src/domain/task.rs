//! A task's record and the rules of its lifecycle (PROTOCOL.md v1.1, §Tasks), as pure
//! functions: what a batch of producer items (or a cancel) does to a task, decided from the
//! record alone. The record holds the task's status; its list blob holds every artifact chunk
//! as published, folded into artifacts when the task is read (appending costs no rewrite of
//! what came before).

use serde_json::Value;
use store_client::FinalTask;
use wire::EventBody;
use wire::task::{Artifact, ArtifactItem, Part, StatusItem, Task, TaskItem, TaskState};

use super::TaskError;
use crate::backplane::{Append, Event, Expect, Keep, Record, Unavailable};

/// The record name of a task in its user's slot.
pub fn record_name(task_id: &str) -> String {
    format!("k:{task_id}")
}

/// A task as its record holds it (artifacts apart, in the list blob).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRec {
    pub user_id: String,
    pub context_id: String,
    pub title: String,
    pub state: TaskState,
    pub message: Option<String>,
    pub created_ms: i64,
    /// The time of its last status change.
    pub updated_ms: i64,
    pub metadata: Value,
    /// Bytes of artifact chunks so far (bounded by the configured limit).
    pub bytes: u64,
    pub version: u64,
    /// The seq of its first `task.status`, and of its latest event.
    pub first_seq: u64,
    pub last_seq: u64,
}

fn corrupt(what: &str) -> Unavailable {
    tracing::error!(field = what, "a task record is unreadable");
    Unavailable { code: "state_corrupt", message: "a task's state is unreadable".into() }
}

impl TaskRec {
    pub fn parse(r: &Record) -> Result<TaskRec, Unavailable> {
        let s = |k: &str| r.get(k).ok_or_else(|| corrupt(k));
        let n = |k: &str| s(k)?.parse::<i64>().map_err(|_| corrupt(k));
        let json = |k: &str| serde_json::from_str::<Value>(s(k)?).map_err(|_| corrupt(k));
        Ok(TaskRec {
            user_id: s("user")?.to_owned(),
            context_id: s("ctx")?.to_owned(),
            title: s("title")?.to_owned(),
            state: TaskState::parse(s("state")?).ok_or_else(|| corrupt("state"))?,
            message: json("msg")?.as_str().map(str::to_owned),
            created_ms: n("created")?,
            updated_ms: n("updated")?,
            metadata: json("meta")?,
            bytes: n("bytes")? as u64,
            version: r.version,
            first_seq: r.first_seq,
            last_seq: r.last_seq,
        })
    }

    /// Every field (a create writes them all; a change rewrites the few that move too).
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("user", self.user_id.clone()),
            ("ctx", self.context_id.clone()),
            ("title", self.title.clone()),
            ("created", self.created_ms.to_string()),
            ("meta", self.metadata.to_string()),
            ("state", self.state.as_str().to_owned()),
            ("msg", Value::from(self.message.clone()).to_string()),
            ("updated", self.updated_ms.to_string()),
            ("bytes", self.bytes.to_string()),
        ]
    }

    /// The fields a change rewrites: the artifact bytes, and the status when it changed (a
    /// chunk touches one field, not the whole record).
    pub fn changes(&self, status: bool) -> Vec<(&'static str, String)> {
        let mut f = vec![("bytes", self.bytes.to_string())];
        if status {
            f.push(("state", self.state.as_str().to_owned()));
            f.push(("msg", Value::from(self.message.clone()).to_string()));
            f.push(("updated", self.updated_ms.to_string()));
        }
        f
    }

    /// The task object; `artifacts` as folded from the list blob (`None`: a list's entry).
    pub fn task(&self, task_id: &str, artifacts: Option<Vec<Artifact>>) -> Task {
        Task {
            task_id: task_id.to_owned(),
            user_id: self.user_id.clone(),
            context_id: self.context_id.clone(),
            title: self.title.clone(),
            state: self.state,
            message: self.message.clone(),
            created_at: crate::ids::rfc3339_ms(self.created_ms),
            updated_at: crate::ids::rfc3339_ms(self.updated_ms),
            artifacts,
            metadata: self.metadata.clone(),
        }
    }

    /// The task as stored once terminal, at its place in the hub: the time of its last status
    /// change, ties broken by the seq of its first event (fixed for its life, so a cursor
    /// never moves under a task, whether it is read from the log or from the store).
    pub fn finished(&self, task_id: &str, chunks: &[String]) -> FinalTask {
        FinalTask {
            task: self.task(task_id, Some(fold(chunks))),
            updated_at_ms: self.updated_ms,
            seq: self.first_seq,
        }
    }

    /// The `task.status` event of its current state.
    pub fn status_event(&self, task_id: &str) -> Event {
        Event::of(&EventBody::TaskStatus {
            task_id: task_id.to_owned(),
            context_id: self.context_id.clone(),
            state: self.state,
            message: self.message.clone(),
            timestamp: crate::ids::rfc3339_ms(self.updated_ms),
        })
    }
}

/// Who asks for a change: the producer, or the task's user cancelling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Producer,
    Owner,
}

/// What a batch does to a task: the append (empty when nothing is accepted), the record after
/// it, how many items went in and why the next one did not.
pub struct Plan {
    pub append: Append,
    pub next: TaskRec,
    pub accepted: u64,
    pub refused: Option<TaskError>,
}

impl Plan {
    pub fn ends(&self) -> bool {
        self.next.state.is_terminal()
    }
}

/// Decides a batch on `rec`: items in order until a terminal state (nothing follows it) or a
/// refused item; artifact chunks count against `max_bytes`.
pub fn plan(
    task_id: &str,
    rec: &TaskRec,
    items: Vec<TaskItem>,
    by: By,
    max_bytes: u64,
    now_ms: i64,
) -> Plan {
    let mut next = rec.clone();
    let mut append =
        Append::to(&rec.user_id, &record_name(task_id), Expect::Version(rec.version), vec![]);
    let (mut accepted, mut refused, mut status) = (0, None, false);
    for item in items {
        if next.state.is_terminal() {
            refused = Some(match by {
                By::Producer => TaskError::Ended(task_id.to_owned()),
                By::Owner => TaskError::NotCancelable(task_id.to_owned()),
            });
            break;
        }
        match item {
            TaskItem::Status(StatusItem { state, message }) => {
                (next.state, next.message, status) = (state, message, true);
                next.updated_ms = now_ms.max(next.updated_ms);
                append.events.push(next.status_event(task_id));
            }
            TaskItem::Artifact(a) => match artifact_event(task_id, a, &mut next, max_bytes) {
                Ok((json, event)) => {
                    append.items.push(json);
                    append.events.push(event);
                }
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            },
        }
        accepted += 1;
    }
    append.set = next.changes(status);
    append.keep = Keep::For(super::tasks::OPEN_TTL);
    Plan { append, next, accepted, refused }
}

/// A checked artifact chunk: the list blob's entry and its `task.artifact` event.
fn artifact_event(
    task_id: &str,
    a: ArtifactItem,
    next: &mut TaskRec,
    max_bytes: u64,
) -> Result<(String, Event), TaskError> {
    if !crate::ids::valid(&a.artifact_id) {
        return Err(TaskError::Invalid(
            "\"artifact_id\" must be 1-128 characters of [A-Za-z0-9._:-]".into(),
        ));
    }
    if a.name.as_deref().is_some_and(|n| !wire::api::valid_name(n, 256)) {
        return Err(TaskError::Invalid(
            "\"name\" must be 1-256 bytes without control characters".into(),
        ));
    }
    let body = EventBody::TaskArtifact {
        task_id: task_id.to_owned(),
        artifact_id: a.artifact_id,
        name: a.name,
        parts: a.parts,
        append: a.append,
        last_chunk: a.last_chunk,
    };
    let event = Event::of(&body);
    next.bytes += event.json.len() as u64;
    if next.bytes > max_bytes {
        return Err(TaskError::TooLarge(max_bytes));
    }
    Ok((event.json.clone(), event))
}

/// The artifacts a task's chunks make, in the order each first appeared: `append` adds parts
/// to the artifact (creating it when unknown), otherwise a chunk replaces it.
pub fn fold(chunks: &[String]) -> Vec<Artifact> {
    let mut out: Vec<Artifact> = Vec::new();
    for c in chunks {
        let Ok(EventBody::TaskArtifact { artifact_id, name, parts, append, .. }) =
            serde_json::from_str::<EventBody>(c)
        else {
            tracing::error!("an artifact chunk of a task is unreadable; left out");
            continue;
        };
        match out.iter_mut().find(|a| a.artifact_id == artifact_id) {
            Some(a) if append => {
                a.parts.extend(parts);
                a.name = name.or(a.name.take());
            }
            Some(a) => (a.name, a.parts) = (name, parts),
            None => out.push(Artifact { artifact_id, name, parts }),
        }
    }
    out
}

/// The text of an artifact's parts (A2A turns show a turn's text as one text part).
pub fn text_part(text: String) -> Part {
    Part::Text { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec() -> TaskRec {
        TaskRec {
            user_id: "u".into(),
            context_id: "c".into(),
            title: "t".into(),
            state: TaskState::Submitted,
            message: None,
            created_ms: 10,
            updated_ms: 10,
            metadata: json!({}),
            bytes: 0,
            version: 1,
            first_seq: 1,
            last_seq: 1,
        }
    }

    fn item(v: Value) -> TaskItem {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_terminal_state_ends_the_batch() {
        let items = vec![
            item(json!({"status":{"state":"working"}})),
            item(json!({"artifact":{"artifact_id":"a","parts":[{"text":"x"}]}})),
            item(json!({"status":{"state":"completed","message":"ok"}})),
            item(json!({"status":{"state":"working"}})),
        ];
        let p = plan("k", &rec(), items, By::Producer, 1 << 20, 20);
        assert_eq!(p.accepted, 3);
        assert_eq!(p.refused, Some(TaskError::Ended("k".into())));
        assert_eq!(p.append.events.len(), 3);
        assert_eq!(p.append.items.len(), 1);
        assert!(p.ends() && p.next.updated_ms == 20 && p.next.message.as_deref() == Some("ok"));
    }

    #[test]
    fn chunks_fold_into_artifacts_and_count_against_the_limit() {
        let chunk = |id: &str, text: &str, append: bool| {
            item(json!({"artifact":{"artifact_id":id,"parts":[{"text":text}],"append":append}}))
        };
        let items = vec![
            chunk("a", "1", false),
            chunk("b", "x", true),
            chunk("a", "2", true),
            chunk("b", "y", false),
        ];
        let p = plan("k", &rec(), items, By::Producer, 1 << 20, 20);
        let arts = fold(&p.append.items);
        assert_eq!(arts.len(), 2);
        assert_eq!(arts[0].parts, vec![text_part("1".into()), text_part("2".into())]);
        assert_eq!(arts[1].parts, vec![text_part("y".into())], "a chunk without append replaces");
        let small = plan("k", &rec(), vec![chunk("a", "long enough", false)], By::Producer, 10, 20);
        assert_eq!((small.accepted, small.refused), (0, Some(TaskError::TooLarge(10))));
    }

    #[test]
    fn the_owner_cannot_cancel_what_ended() {
        let mut done = rec();
        done.state = TaskState::Failed;
        let p =
            plan("k", &done, vec![item(json!({"status":{"state":"canceled"}}))], By::Owner, 1, 1);
        assert_eq!(p.refused, Some(TaskError::NotCancelable("k".into())));
    }
}
