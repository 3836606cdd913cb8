//! PROTOCOL.md v1.1, §A2A binding, on the real binary: the Agent Card, every method with its
//! errors, a subscription dropped mid-stream and resumed with `Last-Event-ID` (each update
//! once), a turn seen as a task, and `SendMessage` through a test agent.

mod common;

use common::sse::SseClient;
use common::*;
use serde_json::{Value, json};

async fn rpc(gw: &TestGateway, user: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let r = gw
        .http
        .post(gw.url("/a2a"))
        .bearer_auth(token(user, None))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "JSON-RPC answers 200, errors included");
    r.json().await.unwrap()
}

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {v}"))
}

async fn subscribe(gw: &TestGateway, user: &str, id: &str, last: Option<&str>) -> SseClient {
    let body =
        json!({"jsonrpc": "2.0", "id": "s1", "method": "SubscribeToTask", "params": {"id": id}});
    let mut req = gw.http.post(gw.url("/a2a")).bearer_auth(token(user, None)).json(&body);
    if let Some(l) = last {
        req = req.header("last-event-id", l);
    }
    SseClient::from_response(req.send().await.unwrap())
}

async fn task_items(gw: &TestGateway, id: &str, items: &[Value]) {
    for item in items {
        let (s, r) = gw.post_json(&format!("/v1/tasks/{id}/events"), &producer_token(), item).await;
        assert_eq!(s, 200, "{r}");
    }
}

fn new_task(user: &str, id: &str, ctx: &str) -> Value {
    json!({"user_id": user, "context_id": ctx, "title": format!("T {id}"), "task_id": id})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_and_every_method_with_its_errors() {
    let gw = TestGateway::start(&[("GATEWAY_PUBLIC_URL", "https://gw.example.com/")]);
    let card: Value = gw
        .http
        .get(gw.url("/.well-known/agent-card.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["supportedInterfaces"][0]["url"], "https://gw.example.com/a2a");
    assert_eq!(card["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
    assert_eq!(card["capabilities"], json!({"streaming": true, "pushNotifications": false}));
    assert_eq!(card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["bearerFormat"], "JWT");
    assert!(card["skills"].as_array().is_some_and(|s| !s.is_empty()));

    for i in 0..5 {
        let (s, _) = gw
            .post_json("/v1/tasks", &producer_token(), &new_task("au", &format!("a{i}"), "c"))
            .await;
        assert_eq!(s, 201);
    }
    gw.post_json("/v1/tasks", &producer_token(), &new_task("other", "theirs", "c")).await;
    task_items(
        &gw,
        "a1",
        &[
            json!({"artifact": {"artifact_id": "r", "parts": [{"text": "x"}]}}),
            json!({"status": {"state": "completed", "message": "done"}}),
        ],
    )
    .await;

    let t = rpc(&gw, "au", "GetTask", json!({"id": "a1"})).await;
    let task = &t["result"];
    assert_eq!((task["id"].as_str(), task["contextId"].as_str()), (Some("a1"), Some("c")));
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(task["status"]["message"]["parts"][0]["text"], "done");
    assert!(task["status"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], "x");
    let theirs = rpc(&gw, "au", "GetTask", json!({"id": "theirs"})).await;
    assert_eq!(code(&theirs), -32001, "another user's task is not found");
    assert_eq!(theirs["error"]["data"][0]["reason"], "TASK_NOT_FOUND");
    assert_eq!(theirs["error"]["data"][0]["domain"], "a2a-protocol.org");
    assert_eq!(code(&rpc(&gw, "au", "GetTask", json!({"id": "nope"})).await), -32001);

    let c = rpc(&gw, "au", "CancelTask", json!({"id": "a2"})).await;
    assert_eq!(c["result"]["status"]["state"], "TASK_STATE_CANCELED");
    assert_eq!(code(&rpc(&gw, "au", "CancelTask", json!({"id": "a2"})).await), -32002);
    assert_eq!(code(&rpc(&gw, "au", "CancelTask", json!({"id": "theirs"})).await), -32001);

    let l = rpc(&gw, "au", "ListTasks", json!({"pageSize": 2})).await;
    let r = &l["result"];
    assert_eq!((r["pageSize"].as_u64(), r["totalSize"].as_u64()), (Some(2), Some(5)), "{l}");
    assert_eq!(r["tasks"].as_array().unwrap().len(), 2);
    assert!(r["tasks"][0].get("artifacts").is_none());
    let mut seen: Vec<String> = Vec::new();
    let mut token_ = String::new();
    loop {
        let l = rpc(&gw, "au", "ListTasks", json!({"pageSize": 2, "pageToken": token_})).await;
        for t in l["result"]["tasks"].as_array().unwrap() {
            seen.push(t["id"].as_str().unwrap().to_owned());
        }
        token_ = l["result"]["nextPageToken"].as_str().unwrap().to_owned();
        if token_.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(&seen[..2], ["a2", "a1"], "newest status change first");
    let done = rpc(
        &gw,
        "au",
        "ListTasks",
        json!({"status": "TASK_STATE_COMPLETED", "includeArtifacts": true}),
    )
    .await;
    assert_eq!(done["result"]["tasks"][0]["artifacts"][0]["artifactId"], "r");
    assert_eq!(done["result"]["totalSize"], 1);
    assert_eq!(code(&rpc(&gw, "au", "ListTasks", json!({"pageSize": 0})).await), -32602);
    assert_eq!(code(&rpc(&gw, "au", "ListTasks", json!({"status": "working"})).await), -32602);

    // The envelope and the version.
    let raw = |body: &'static str, version: Option<&'static str>| {
        let gw = &gw;
        async move {
            let mut req = gw.http.post(gw.url("/a2a")).bearer_auth(token("au", None)).body(body);
            if let Some(v) = version {
                req = req.header("A2A-Version", v);
            }
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    assert_eq!(code(&raw("{", None).await), -32700);
    assert_eq!(code(&raw("[1]", None).await), -32600);
    assert_eq!(code(&raw(r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#, None).await), -32600);
    assert_eq!(code(&raw(r#"{"jsonrpc":"2.0","id":1,"method":"Nope"}"#, None).await), -32601);
    assert_eq!(
        code(&raw(r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{}}"#, None).await),
        -32602
    );
    let v = raw(r#"{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"a1"}}"#, Some("0.3"))
        .await;
    assert_eq!((code(&v), &v["id"]), (-32009, &json!(7)));
    let v = raw(r#"{"jsonrpc":"2.0","id":7,"method":"GetTask","params":{"id":"a1"}}"#, Some("1.0"))
        .await;
    assert_eq!(v["result"]["id"], "a1");
    assert_eq!(
        code(&rpc(&gw, "au", "SendMessage", json!({"message": {}})).await),
        -32004,
        "no agent set"
    );
    let r = gw
        .http
        .post(gw.url("/a2a"))
        .bearer_auth(token("au", None))
        .json(&json!({"jsonrpc":"2.0","id":1,"method":"SubscribeToTask","params":{"id":"a1"}}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(code(&v), -32004, "a terminal task without Last-Event-ID");
    let no_token = gw.http.post(gw.url("/a2a")).body("{}").send().await.unwrap();
    assert_eq!(no_token.status(), 401);
}

/// The JSON-RPC result of an SSE frame, and its id.
async fn frame(s: &mut SseClient) -> (String, Value) {
    let e = s.event().await;
    let v: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(v["id"], "s1");
    (e.id.expect("every frame has an id"), v["result"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_dropped_mid_stream_resumes_with_each_update_once() {
    let gw = TestGateway::start(&[]);
    gw.post_json("/v1/tasks", &producer_token(), &new_task("su", "long", "c")).await;
    let mut sub = subscribe(&gw, "su", "long", None).await;
    let (first_id, first) = frame(&mut sub).await;
    assert_eq!(first["task"]["status"]["state"], "TASK_STATE_SUBMITTED");
    let chunk = |i: usize| json!({"artifact": {"artifact_id": "doc", "parts": [{"text": format!("{i};")}], "append": true}});
    task_items(&gw, "long", &[json!({"status": {"state": "working"}}), chunk(0), chunk(1)]).await;
    let mut got = Vec::new();
    let mut last_id = first_id;
    for _ in 0..3 {
        let (id, r) = frame(&mut sub).await;
        got.push(r);
        last_id = id;
    }
    assert_eq!(got[0]["statusUpdate"]["status"]["state"], "TASK_STATE_WORKING");
    assert_eq!(got[1]["artifactUpdate"]["artifact"]["parts"][0]["text"], "0;");
    assert_eq!(got[1]["artifactUpdate"]["append"], true);
    drop(sub);
    // Meanwhile: more chunks, other traffic of the user, and the end.
    gw.notify("su", "noise", None).await;
    task_items(&gw, "long", &[chunk(2), chunk(3), json!({"status": {"state": "completed"}})]).await;
    let mut again = subscribe(&gw, "su", "long", Some(&last_id)).await;
    let mut rest = Vec::new();
    while let Some(e) = again.next().await {
        let v: Value = serde_json::from_str(&e.data).unwrap();
        rest.push(v["result"].clone());
    }
    assert_eq!(rest.len(), 3, "only what came after, then closed: {rest:?}");
    assert_eq!(rest[0]["artifactUpdate"]["artifact"]["parts"][0]["text"], "2;");
    assert_eq!(rest[1]["artifactUpdate"]["artifact"]["parts"][0]["text"], "3;");
    assert_eq!(rest[2]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_is_a_task_too() {
    let gw = TestGateway::start(&[]);
    gw.create_turn("tu", "conv9", "turn9").await;
    gw.send_items("turn9", &[json!({"delta": "Hel"})]).await;
    let t = rpc(&gw, "tu", "GetTask", json!({"id": "turn9"})).await;
    assert_eq!(t["result"]["status"]["state"], "TASK_STATE_WORKING");
    assert_eq!(t["result"]["contextId"], "conv9");
    assert_eq!(t["result"]["artifacts"][0]["artifactId"], "response");
    assert_eq!(t["result"]["artifacts"][0]["parts"][0]["text"], "Hel");
    let mut sub = subscribe(&gw, "tu", "turn9", None).await;
    let (_, first) = frame(&mut sub).await;
    assert_eq!(first["task"]["artifacts"][0]["parts"][0]["text"], "Hel");
    gw.send_items("turn9", &[json!({"delta": "lo"}), end_item()]).await;
    let (_, d) = frame(&mut sub).await;
    assert_eq!(d["artifactUpdate"]["artifact"]["parts"][0]["text"], "lo");
    assert_eq!(d["artifactUpdate"]["append"], true);
    let (_, end) = frame(&mut sub).await;
    assert_eq!(end["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert!(sub.next().await.is_none(), "closed after the terminal state");
    assert_eq!(code(&rpc(&gw, "tu", "CancelTask", json!({"id": "turn9"})).await), -32002);
    assert_eq!(code(&rpc(&gw, "other", "GetTask", json!({"id": "turn9"})).await), -32001);
    let l = rpc(&gw, "tu", "ListTasks", json!({})).await;
    assert_eq!(l["result"]["tasks"], json!([]), "ListTasks lists tasks, not turns");
    gw.create_turn("tu", "conv9", "turn10").await;
    let c = rpc(&gw, "tu", "CancelTask", json!({"id": "turn10"})).await;
    assert_eq!(c["result"]["status"]["state"], "TASK_STATE_CANCELED");
}

/// A test agent: creates a task for the user it is told of, through the producer API.
async fn agent(gateway: Gw, owner_override: Option<&'static str>) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/",
        post(move |Json(body): Json<Value>| {
            let gateway = gateway.get().cloned().unwrap_or_default();
            async move {
                let user = owner_override.unwrap_or(body["user_id"].as_str().unwrap()).to_owned();
                let text = body["message"]["parts"][0]["text"].as_str().unwrap_or("").to_owned();
                let id = format!("m{:x}", rand_id());
                let http = reqwest::Client::new();
                let task =
                    json!({"user_id": user, "context_id": "chat", "title": text, "task_id": id});
                http.post(format!("{gateway}/v1/tasks"))
                    .bearer_auth(producer_token())
                    .json(&task)
                    .send()
                    .await
                    .unwrap();
                let done =
                    json!({"status": {"state": "completed", "message": format!("echo: {text}")}});
                http.post(format!("{gateway}/v1/tasks/{id}/events"))
                    .bearer_auth(producer_token())
                    .json(&done)
                    .send()
                    .await
                    .unwrap();
                Json(json!({"task_id": id}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

/// Where the test agent finds the gateway (known once it runs).
type Gw = std::sync::Arc<std::sync::OnceLock<String>>;

fn rand_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_message_goes_through_the_agent() {
    let at = Gw::default();
    let good = agent(at.clone(), None).await;
    let gw = TestGateway::start(&[("GATEWAY_A2A_AGENT_URL", &good)]);
    at.set(gw.url("")).unwrap();
    let msg =
        json!({"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}]}});
    let r = rpc(&gw, "mu", "SendMessage", msg.clone()).await;
    assert_eq!(r["result"]["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{r}");
    assert_eq!(r["result"]["task"]["status"]["message"]["parts"][0]["text"], "echo: hi");
    let body =
        json!({"jsonrpc": "2.0", "id": "s1", "method": "SendStreamingMessage", "params": msg});
    let resp = gw
        .http
        .post(gw.url("/a2a"))
        .bearer_auth(token("mu", None))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut s = SseClient::from_response(resp);
    let (_, first) = frame(&mut s).await;
    assert_eq!(first["task"]["status"]["state"], "TASK_STATE_COMPLETED");
    assert!(s.next().await.is_none());
    drop(gw);

    let at = Gw::default();
    let wrong = agent(at.clone(), Some("someone-else")).await;
    let gw = TestGateway::start(&[("GATEWAY_A2A_AGENT_URL", &wrong)]);
    at.set(gw.url("")).unwrap();
    assert_eq!(
        code(&rpc(&gw, "mu", "SendMessage", msg.clone()).await),
        -32603,
        "another user's task"
    );
    drop(gw);
    let gw = TestGateway::start(&[("GATEWAY_A2A_AGENT_URL", "http://127.0.0.1:9/")]);
    assert_eq!(code(&rpc(&gw, "mu", "SendMessage", msg).await), -32603, "agent down");
}
