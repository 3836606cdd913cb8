//! PROTOCOL.md v1.1, §Tasks, on the real binary: a task's lifecycle reaching WebSocket and SSE
//! devices, its artifacts assembled, the hub's list and pages, isolation between users,
//! cancel from a device and over HTTP, a snapshot mid-stream, and a terminal task still listed
//! after a restart (from the store).

mod common;

use common::*;
use serde_json::{Value, json};
use wire::{ControlFrame, EventBody};

async fn create(gw: &TestGateway, user: &str, ctx: &str, id: &str) -> (u16, Value) {
    let body =
        json!({"user_id": user, "context_id": ctx, "title": format!("task {id}"), "task_id": id});
    gw.post_json("/v1/tasks", &producer_token(), &body).await
}

async fn items(gw: &TestGateway, id: &str, items: &[Value]) -> (u16, Value) {
    let body: String = items.iter().map(|i| format!("{i}\n")).collect();
    gw.post_ndjson(&format!("/v1/tasks/{id}/events"), body).await
}

fn chunk(id: &str, text: &str, append: bool) -> Value {
    json!({"artifact": {"artifact_id": id, "name": "report", "parts": [{"text": text}], "append": append}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reaches_every_device_and_its_artifacts_add_up() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("ta", "device_id=phone").await;
    let mut sse = gw.sse("ta", "device_id=teams", None).await;
    sse.hello().await;

    let (s, created) = create(&gw, "ta", "ctx1", "k1").await;
    assert_eq!(s, 201, "{created}");
    let (s, again) = create(&gw, "ta", "ctx1", "k1").await;
    assert_eq!((s, &again["seq"]), (200, &created["seq"]), "idempotent on task_id");
    assert_eq!(create(&gw, "tb", "ctx1", "k1").await.0, 409, "another user's id");
    assert_eq!(create(&gw, "ta", "ctx2", "k1").await.0, 409, "another context");

    let (s, r) = items(
        &gw,
        "k1",
        &[
            json!({"status": {"state": "working", "message": "writing"}}),
            chunk("a1", "Hello ", false),
            chunk("a1", "world", true),
        ],
    )
    .await;
    assert_eq!((s, r["accepted"].as_u64()), (200, Some(3)), "{r}");

    // A snapshot mid-stream: the artifact so far, as of a seq.
    ws.send_json(json!({"type": "task.get", "task_id": "k1", "ref": 7})).await;
    let mut early = Vec::new();
    let snap = loop {
        match ws.frame().await {
            wire::ServerFrame::Control(c) => break c,
            wire::ServerFrame::Event(e) => early.push(e),
        }
    };
    let ControlFrame::TaskSnapshot { task, as_of_seq, reference } = snap else {
        panic!("{snap:?}")
    };
    assert_eq!(reference, Some(json!(7)));
    assert_eq!(task.state, wire::task::TaskState::Working);
    let arts = task.artifacts.unwrap();
    assert_eq!(
        serde_json::to_value(&arts[0].parts).unwrap(),
        json!([{"text":"Hello "},{"text":"world"}])
    );
    assert_eq!(as_of_seq, r["last_seq"].as_u64().unwrap());

    let (s, r) = items(
        &gw,
        "k1",
        &[json!({"status": {"state": "completed"}}), json!({"status": {"state": "working"}})],
    )
    .await;
    assert_eq!(s, 409, "{r}");
    assert_eq!(r["error"]["code"], "task_ended");
    assert!(r["error"]["message"].as_str().unwrap().contains("line 2"), "{r}");
    assert_eq!(items(&gw, "k1", &[json!({"status": {"state": "working"}})]).await.0, 409);
    let (s, r) = items(&gw, "k2x", &[json!({"status": {"state": "working"}})]).await;
    assert_eq!((s, &r["error"]["code"]), (404, &json!("task_not_found")));

    // Both devices: created, working, two chunks, completed; in order.
    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        let e = if early.is_empty() { ws.event().await } else { early.remove(0) };
        assert_eq!(e.body.task_id(), Some("k1"));
        kinds.push(e.body.kind());
        if let EventBody::TaskStatus { state, .. } = &e.body {
            assert!(kinds.len() != 1 || *state == wire::task::TaskState::Submitted);
        }
    }
    assert_eq!(
        kinds,
        ["task.status", "task.status", "task.artifact", "task.artifact", "task.status"]
    );
    let mut sse_kinds = Vec::new();
    while sse_kinds.len() < 5 {
        sse_kinds.push(sse.event().await.event);
    }
    assert_eq!(sse_kinds, kinds);

    let (s, t) = gw.get_json("/v1/tasks/k1", &token("ta", None)).await;
    assert_eq!((s, &t["state"]), (200, &json!("completed")), "{t}");
    assert_eq!(t["artifacts"][0]["parts"][1]["text"], "world");
    assert_eq!(gw.get_json("/v1/tasks/k1", &token("tb", None)).await.0, 404, "another user's");
    assert_eq!(gw.get_json("/v1/tasks/k1", &producer_token()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_lists_pages_and_cancels_and_keeps_ended_tasks_after_a_restart() {
    let dir = temp_dir("tasks-restart");
    let mut gw = TestGateway::start_in(&dir, &[]);
    gw.keep_data = true;
    for i in 0..7 {
        let ctx = if i % 2 == 0 { "even" } else { "odd" };
        assert_eq!(create(&gw, "hu", ctx, &format!("h{i}")).await.0, 201);
    }
    create(&gw, "other", "even", "x1").await;
    for i in [1, 3] {
        let (s, _) = items(&gw, &format!("h{i}"), &[json!({"status": {"state": "failed"}})]).await;
        assert_eq!(s, 200);
    }
    let user = token("hu", None);
    // Cancel over HTTP, and from a device; a terminal one is not cancelable.
    let (s, t) = gw.post_json("/v1/tasks/h0/cancel", &user, &json!({})).await;
    assert_eq!((s, &t["state"]), (200, &json!("canceled")), "{t}");
    let (s, e) = gw.post_json("/v1/tasks/h1/cancel", &user, &json!({})).await;
    assert_eq!((s, &e["error"]["code"]), (409, &json!("task_not_cancelable")));
    let (s, _) = gw.post_json("/v1/tasks/x1/cancel", &user, &json!({})).await;
    assert_eq!(s, 404, "another user's task is not found");
    let mut ws = gw.device("hu", "").await;
    ws.send_json(json!({"type": "task.cancel", "task_id": "h2"})).await;
    let e = ws.event().await;
    assert!(matches!(e.body, EventBody::TaskStatus { state: wire::task::TaskState::Canceled, .. }));
    ws.send_json(json!({"type": "task.cancel", "task_id": "h2", "ref": "again"})).await;
    let c = ws.control().await;
    assert!(
        matches!(&c, ControlFrame::Error { code, .. } if code == "task_not_cancelable"),
        "{c:?}"
    );

    let list = |q: &'static str| {
        let (gw, user) = (&gw, user.clone());
        async move {
            let (s, page) = gw.get_json(&format!("/v1/tasks?{q}"), &user).await;
            assert_eq!(s, 200, "{page}");
            page
        }
    };
    let all = list("limit=100").await;
    assert_eq!(all["next"], Value::Null);
    assert!(all["tasks"][0].get("artifacts").is_none(), "lists leave artifacts out");
    let mut expected: Vec<String> = task_ids(&all);
    assert_eq!(expected.len(), 7, "{all}");
    assert_eq!(&expected[..1], ["h2"], "newest status change first");
    assert_eq!(task_ids(&list("state=active").await), ["h6", "h5", "h4"]);
    assert_eq!(task_ids(&list("state=terminal&context_id=odd").await), ["h3", "h1"]);
    // Paging by threes gives the same order, each once.
    let mut paged = Vec::new();
    let mut q = "limit=3".to_owned();
    loop {
        let (_, page) = gw.get_json(&format!("/v1/tasks?{q}"), &user).await;
        paged.extend(task_ids(&page));
        match page["next"].as_str() {
            Some(n) => q = format!("limit=3&before={n}"),
            None => break,
        }
    }
    assert_eq!(paged, expected);
    assert_eq!(gw.get_json("/v1/tasks?limit=0", &user).await.0, 400);
    assert_eq!(gw.get_json("/v1/tasks?before=zz", &user).await.0, 400);
    assert_eq!(gw.get_json("/v1/tasks?user_id=other", &user).await.0, 403);
    let (_, theirs) =
        gw.get_json("/v1/tasks?user_id=other", &token("admin", Some("gateway.admin"))).await;
    assert_eq!(task_ids(&theirs), ["x1"]);

    // Restart: open tasks end failed (gateway_restarted); ended ones are listed from the store.
    drop(ws);
    gw.signal("TERM");
    gw.wait_exit(std::time::Duration::from_secs(10));
    let gw = TestGateway::start_in(&dir, &[]);
    let after = {
        let mut page;
        let started = std::time::Instant::now();
        loop {
            page = gw.get_json("/v1/tasks?limit=100", &user).await.1;
            if task_ids(&page).len() == 7 || started.elapsed().as_secs() > 10 {
                break page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let states: Vec<(String, String)> = after["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["task_id"].as_str().unwrap().to_owned(), t["state"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(states.len(), 7, "{after}");
    for (id, state) in &states {
        let want = match id.as_str() {
            "h0" | "h2" => "canceled",
            "h4" | "h5" | "h6" => "failed",
            _ => "failed",
        };
        assert_eq!(state, want, "{id}");
    }
    let (_, h5) = gw.get_json("/v1/tasks/h5", &user).await;
    assert_eq!(h5["message"], "gateway_restarted");
    expected.sort();
    let mut now: Vec<String> = states.into_iter().map(|s| s.0).collect();
    now.sort();
    assert_eq!(now, expected);
}
