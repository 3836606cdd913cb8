//! Traces: a producer's W3C `traceparent` is carried onto its turn, and the spans of the turn's
//! requests, its apply and publish steps and its store write reach an OTLP collector (a real
//! OTLP/HTTP JSON receiver on 127.0.0.1) under the producer's trace id.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestGateway, end_item, producer_token};
use serde_json::{Value, json};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// An OTLP/HTTP receiver keeping every span it is sent (JSON encoding).
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let keep = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for rs in v["resourceSpans"].as_array().into_iter().flatten() {
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for s in ss["spans"].as_array().into_iter().flatten() {
                            let mut s = s.clone();
                            s["resource"] = rs["resource"].clone();
                            keep.lock().unwrap().push(s);
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

/// The names of the spans of `trace` received so far.
fn names(spans: &Mutex<Vec<Value>>, trace: &str) -> Vec<String> {
    let spans = spans.lock().unwrap();
    let of_trace = spans.iter().filter(|s| s["traceId"].as_str() == Some(trace));
    of_trace.map(|s| s["name"].as_str().unwrap_or("").to_owned()).collect()
}

/// Waits until the trace holds at least `n` spans of each `(name, n)`: the batch exporter may
/// send a trace's spans in several batches.
async fn wait_for(spans: &Mutex<Vec<Value>>, trace: &str, want: &[(&str, usize)]) -> Vec<String> {
    for _ in 0..100 {
        let got = names(spans, trace);
        if want.iter().all(|(w, n)| got.iter().filter(|g| g == w).count() >= *n) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("spans of {trace}: want {want:?}, got {:?}", names(spans, trace));
}

async fn post(gw: &TestGateway, path: &str, tp: Option<&str>, body: Value) -> u16 {
    let mut req = gw.http.post(gw.url(path)).bearer_auth(producer_token()).json(&body);
    if let Some(tp) = tp {
        req = req.header("traceparent", tp);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_turn_joins_the_producers_trace_from_creation_to_its_store_write() {
    let (endpoint, spans) = collector().await;
    let gw = TestGateway::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]);
    let tp = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let create = json!({"user_id": "alice", "conversation_id": "c", "turn_id": "traced-1"});
    assert_eq!(post(&gw, "/v1/turns", Some(&tp), create).await, 201);
    // Later requests of the turn carry no traceparent: they join the turn's trace.
    let items = json!({"delta": "hello"});
    assert_eq!(post(&gw, "/v1/turns/traced-1/events", None, items).await, 200);
    assert_eq!(post(&gw, "/v1/turns/traced-1/events", None, end_item()).await, 200);

    let events = "POST /v1/turns/{turn_id}/events";
    let want = [("POST /v1/turns", 1), (events, 2), ("apply", 2), ("publish", 2), ("store", 1)];
    let got = wait_for(&spans, TRACE_ID, &want).await;
    assert_eq!(got.len(), 8, "nothing else, nothing twice: {got:?}");

    // Every span of the trace hangs under the producer's span or another span of ours.
    let all = spans.lock().unwrap().clone();
    let ours: Vec<&Value> = all.iter().filter(|s| s["traceId"] == TRACE_ID).collect();
    let ids: Vec<&str> = ours.iter().filter_map(|s| s["spanId"].as_str()).collect();
    for s in &ours {
        let parent = s["parentSpanId"].as_str().unwrap_or("");
        assert!(parent == "00f067aa0ba902b7" || ids.contains(&parent), "orphan span {s}");
    }
    let service = ours[0]["resource"]["attributes"].to_string();
    assert!(service.contains("gateway"), "service name: {service}");

    // A request with its own traceparent is its own trace, even for the same turn.
    let tp2 = format!("00-{OTHER_TRACE}-b7ad6b7169203331-01");
    let n = json!({"user_id": "alice", "category": "c", "title": "t", "body": "b"});
    assert_eq!(post(&gw, "/v1/notifications", Some(&tp2), n).await, 202);
    wait_for(&spans, OTHER_TRACE, &[("POST /v1/notifications", 1)]).await;
    // A malformed traceparent starts a fresh trace: the request is served all the same.
    let n = json!({"user_id": "alice", "category": "c", "title": "t", "body": "b"});
    assert_eq!(post(&gw, "/v1/notifications", Some("00-zz-yy-01"), n).await, 202);
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_traceparent_is_ignored() {
    let (endpoint, spans) = collector().await;
    // The collector is up but not configured: the gateway must not find it on its own.
    let gw = TestGateway::start(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
    let tp = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let create = json!({"user_id": "bob", "conversation_id": "c", "turn_id": "untraced"});
    assert_eq!(post(&gw, "/v1/turns", Some(&tp), create).await, 201);
    assert_eq!(post(&gw, "/v1/turns/untraced/events", None, end_item()).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(spans.lock().unwrap().is_empty(), "exported to {endpoint} while off");
}
