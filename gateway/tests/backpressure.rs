//! PROTOCOL.md v1.1, §Backpressure, on the real binary: the user's log, not a per-connection
//! queue, is what an endpoint reads from. A burst of any size that fits in the log reaches
//! every reading endpoint whole; a slow reader gets everything at its own pace while the
//! others go at theirs; only an endpoint whose next event has left the log is closed (4008).

mod common;

use std::time::Duration;

use common::redis_server::TestRedis;
use common::ws::Received;
use common::*;
use serde_json::json;
use wire::{EventBody, ServerFrame};

/// One request whose NDJSON body holds `n` deltas and the end, sent as one write.
fn burst_body(n: usize) -> String {
    let mut body: String =
        (0..n).map(|i| format!("{}\n", json!({"delta": format!("d{i} ")}))).collect();
    body.push_str("{\"end\":{\"status\":\"completed\"}}\n");
    body
}

/// Reads a WebSocket to the turn's end; asserts every seq from 1, in order, and no close.
async fn ws_reads_it_all(mut ws: WsClient, last: u64, pause_every: Option<(u64, Duration)>) {
    for want in 1..=last {
        match ws.next().await {
            Received::Frame(ServerFrame::Event(e)) => assert_eq!(e.seq, want, "in order, once"),
            other => panic!("at seq {want}: {other:?}"),
        }
        if let Some((every, pause)) = pause_every
            && want % every == 0
        {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_write_of_20000_deltas_reaches_two_websockets_and_an_sse_stream_whole() {
    let gw = TestGateway::start(&[("GATEWAY_LOG_RETENTION", "50000")]);
    let mut a = gw.ws("burst", "").await;
    let mut b = gw.ws("burst", "").await;
    let mut sse = gw.sse("burst", "", None).await;
    a.hello().await;
    b.hello().await;
    sse.hello().await;
    assert_eq!(gw.create_turn("burst", "c", "tb").await.0, 201);
    let n = 20_000;
    let last = n as u64 + 2;
    let readers = (
        tokio::spawn(ws_reads_it_all(a, last, None)),
        tokio::spawn(ws_reads_it_all(b, last, None)),
    );
    let sse_reader = tokio::spawn(async move {
        let mut text = String::new();
        for want in 1..=last {
            let e = sse.event().await;
            assert!(e.id.as_deref().is_some_and(|id| id.ends_with(&format!(":{want}"))), "{e:?}");
            if e.event == "turn.delta" {
                let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                text.push_str(v["text"].as_str().unwrap());
            }
        }
        text
    });
    let (s, body) = gw.send_ndjson("tb", burst_body(n)).await;
    assert_eq!((s, body["accepted"].as_u64()), (200, Some(n as u64 + 1)), "{body}");
    readers.0.await.unwrap();
    readers.1.await.unwrap();
    let text = sse_reader.await.unwrap();
    assert_eq!(
        text,
        (0..n).map(|i| format!("d{i} ")).collect::<String>(),
        "the SSE device has it whole"
    );
    assert_eq!(gw.metric("gateway_slow_consumer_closes_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_at_a_tenth_of_the_rate_gets_everything_while_another_goes_at_full_speed() {
    let gw = TestGateway::start(&[]);
    let slow = gw.ws("pace", "device_id=slow").await;
    let mut fast = gw.ws("pace", "device_id=fast").await;
    let mut slow = slow;
    slow.hello().await;
    fast.hello().await;
    assert_eq!(gw.create_turn("pace", "c", "tp").await.0, 201);
    let n = 3_000;
    let last = n as u64 + 2;
    let slow_reader =
        tokio::spawn(ws_reads_it_all(slow, last, Some((30, Duration::from_millis(10)))));
    let started = std::time::Instant::now();
    let fast_reader = tokio::spawn(async move {
        ws_reads_it_all(fast, last, None).await;
        started.elapsed()
    });
    let (s, _) = gw.send_ndjson("tp", burst_body(n)).await;
    assert_eq!(s, 200);
    let fast_done = fast_reader.await.unwrap();
    slow_reader.await.unwrap();
    let slow_done = started.elapsed();
    assert!(
        slow_done > fast_done * 2,
        "the fast device was not held back: {fast_done:?} vs {slow_done:?}"
    );
    assert_eq!(gw.metric("gateway_slow_consumer_closes_total").await, 0.0, "no 4008");
}

/// Events of 12 KB to a client that reads in fits: the socket takes frames in parts, so the
/// publisher's direct writes stop mid-frame and the endpoint's task finishes them. Every frame
/// must still arrive whole, once, in order, with its text intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_events_split_by_a_full_socket_arrive_whole_and_in_order() {
    let gw = TestGateway::start(&[]);
    let slow = gw.device("big", "device_id=slow").await;
    let fast = gw.device("big", "device_id=fast").await;
    assert_eq!(gw.create_turn("big", "c", "tbig").await.0, 201);
    let n = 1_000;
    let delta = |i: usize| format!("{i:05}{}", "x".repeat(12_000));
    let last = n as u64 + 2;
    let reader = |mut ws: WsClient, pause: Option<Duration>| async move {
        let mut text = String::new();
        for want in 1..=last {
            match ws.next().await {
                Received::Frame(ServerFrame::Event(e)) => {
                    assert_eq!(e.seq, want, "in order, once");
                    if let EventBody::TurnDelta { text: t, .. } = e.body {
                        text.push_str(&t);
                    }
                }
                other => panic!("at seq {want}: {other:?}"),
            }
            if let Some(p) = pause.filter(|_| want % 100 == 0) {
                tokio::time::sleep(p).await;
            }
        }
        text
    };
    let slow_reader = tokio::spawn(reader(slow, Some(Duration::from_millis(150))));
    let fast_reader = tokio::spawn(reader(fast, None));
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&format!("{}\n", json!({"delta": delta(i)})));
    }
    body.push_str("{\"end\":{\"status\":\"completed\"}}\n");
    let (s, _) = gw.send_ndjson("tbig", body).await;
    assert_eq!(s, 200);
    let want: String = (0..n).map(delta).collect();
    assert!(fast_reader.await.unwrap() == want, "the fast device has the text whole");
    assert!(slow_reader.await.unwrap() == want, "the slow device has the text whole");
    assert_eq!(gw.metric("gateway_slow_consumer_closes_total").await, 0.0, "no 4008");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stopped_reading_is_closed_4008_once_its_next_event_left_the_log() {
    // 100 events of 256 KiB: far more than socket buffers, and a log of 20 events.
    let gw = TestGateway::start(&[("GATEWAY_LOG_RETENTION", "20")]);
    let mut stalled = gw.ws("gone", "").await;
    let (epoch, _, _) = stalled.hello().await;
    let big = "x".repeat(256 * 1024);
    for i in 0..100 {
        let body =
            json!({"user_id": "gone", "category": "c", "title": format!("n{i}"), "body": big});
        let (s, _) = gw.post_json("/v1/notifications", &producer_token(), &body).await;
        assert_eq!(s, 202, "publishing never waits for the stalled client");
    }
    // It reads again: what was on its way, in order, then 4008 (its next event is gone).
    let mut last = 0;
    let code = loop {
        match stalled.next().await {
            Received::Frame(ServerFrame::Event(e)) => {
                assert_eq!(e.seq, last + 1, "no gap before the close");
                last = e.seq;
            }
            Received::Frame(_) => {}
            Received::Closed(code) => break code,
        }
    };
    assert_eq!(code, Some(4008));
    assert!(last < 80, "it had fallen out of the log: {last}");
    let mut again = gw.ws("gone", &format!("epoch={epoch}&after={last}")).await;
    let (_, head, resumed) = again.hello().await;
    assert_eq!((head, resumed), (100, false), "it resumes as the log allows: not at all");
    let mut recent = gw.ws("gone", &format!("epoch={epoch}&after=90")).await;
    assert!(recent.hello().await.2, "a point the log still holds resumes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_burst_across_two_redis_nodes_reaches_every_endpoint_whole() {
    let redis = TestRedis::start();
    let prefix = format!("bp{:x}", rand::random::<u32>());
    let env = [
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_LOG_RETENTION", "20000"),
    ];
    let a = TestGateway::start(&env);
    let b = TestGateway::start(&env);
    let mut on_a = a.ws("rb", "").await;
    let mut on_b = b.ws("rb", "").await;
    on_a.hello().await;
    on_b.hello().await;
    assert_eq!(a.create_turn("rb", "c", "trb").await.0, 201);
    let n = 5_000;
    let last = n as u64 + 2;
    let readers = (
        tokio::spawn(ws_reads_it_all(on_a, last, None)),
        tokio::spawn(ws_reads_it_all(on_b, last, None)),
    );
    let (s, _) = b.send_ndjson("trb", burst_body(n)).await;
    assert_eq!(s, 200);
    readers.0.await.unwrap();
    readers.1.await.unwrap();
    for gw in [&a, &b] {
        assert_eq!(gw.metric("gateway_slow_consumer_closes_total").await, 0.0);
    }
    let _ = EventBody::TurnStart {
        turn_id: String::new(),
        conversation_id: String::new(),
        created_at: String::new(),
        meta: None,
    };
}

/// The gateway's resident memory (KiB).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_with_200_stalled_endpoints_under_a_burst_grows_by_about_the_log() {
    // 200 endpoints of one user that never read, then a burst of 4 MiB: a lagging endpoint
    // costs a position in the shared log, not a copy of it (200 copies would be 800 MiB).
    let gw = TestGateway::start(&[("GATEWAY_MAX_ENDPOINTS_PER_USER", "256")]);
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let ws = gw.device("lagging", "").await;
        stalled.push(ws);
    }
    let before = rss_kib(gw.pid());
    let body = "y".repeat(8 * 1024);
    for i in 0..512 {
        let note =
            json!({"user_id": "lagging", "category": "c", "title": format!("n{i}"), "body": body});
        let (s, _) = gw.post_json("/v1/notifications", &producer_token(), &note).await;
        assert_eq!(s, 202);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown_mib = rss_kib(gw.pid()).saturating_sub(before) / 1024;
    eprintln!("resident memory grew {grown_mib} MiB");
    assert!(grown_mib < 100, "grew {grown_mib} MiB for a 4 MiB log and 200 stalled endpoints");
    // Every one of them still reads it all, in order, from the log.
    for ws in stalled.iter_mut().take(3) {
        for want in 1..=512 {
            match ws.next().await {
                Received::Frame(ServerFrame::Event(e)) => assert_eq!(e.seq, want),
                other => panic!("at {want}: {other:?}"),
            }
        }
    }
}
