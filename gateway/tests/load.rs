//! A small bounded load scenario, with chaos, through the real load tester: zero violations.

mod common;

use common::*;
use loadtest::runner::{self, RunOptions};
use loadtest::scenario::Scenario;
use loadtest::tokens::Tokens;

fn chaotic(url: String) -> Scenario {
    Scenario {
        url,
        users: 20,
        devices: 3,
        sse_ratio: 0.34,
        duration_s: 3.0,
        turn_rate: 10.0,
        max_turns: 20,
        tokens_per_turn: 30,
        token_rate: 100.0,
        notification_rate: 20.0,
        chaos_rate: 0.3,
        ..Scenario::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaotic_mixed_scenario_has_no_violation() {
    let gw = TestGateway::start(&[]);
    let scenario = chaotic(gw.url(""));
    let tokens = Tokens::minted(SECRET, 600);
    let report = runner::run(
        scenario,
        tokens,
        RunOptions { gateway_pids: vec![gw.pid()], ..Default::default() },
    )
    .await
    .unwrap();
    println!("{}", report.table());
    assert!(report.clean(), "{}", report.table());
    assert_eq!(report.connected, 60);
    assert!(report.turns >= 20 && report.notifications >= 40, "{}", report.table());
    assert!(report.reconnects > 10, "chaos really dropped connections");
    assert!(report.resume.count > 10);
    assert!(report.events >= 3 * report.published / 2, "every event reached several devices");
    assert!(report.gateway.rss_per_endpoint_bytes.is_some());
}

/// The same on two Redis-mode nodes: every reconnect resumes on the other node, turns are
/// started on one node and streamed through the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaotic_scenario_across_two_redis_nodes_has_no_violation() {
    let redis = common::redis_server::TestRedis::start();
    let prefix = format!("ld{:x}", rand::random::<u32>());
    let env =
        [("GATEWAY_REDIS_URL", redis.url.as_str()), ("GATEWAY_REDIS_PREFIX", prefix.as_str())];
    let a = TestGateway::start(&env);
    let b = TestGateway::start(&env);
    let scenario = chaotic(format!("{},{}", a.url(""), b.url("")));
    let tokens = Tokens::minted(SECRET, 600);
    let opts = RunOptions { gateway_pids: vec![a.pid(), b.pid()], ..Default::default() };
    let report = runner::run(scenario, tokens, opts).await.unwrap();
    println!("{}", report.table());
    assert!(report.clean(), "{}", report.table());
    assert!(report.reconnects > 10 && report.resume.count > 10, "{}", report.table());
    assert!(report.events >= 3 * report.published / 2, "every event reached several devices");
}

/// Issue 11: the load tester's push scenario against the real binary: notifications to users
/// with no endpoint reach its webhook receiver exactly once each, signed and keyed, including
/// those whose first attempt it refuses (the retry keeps the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_users_are_pushed_once_each_through_the_load_testers_receiver() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let secret = "push-secret-0123456789";
    let url = format!("http://{listen}/push");
    let gw = TestGateway::start(&[
        ("GATEWAY_PUSH_WEBHOOK_URL", &url),
        ("GATEWAY_PUSH_WEBHOOK_SECRET", secret),
    ]);
    let scenario = Scenario {
        url: gw.url(""),
        users: 2,
        devices: 1,
        push_offline: 200,
        webhook_listen: listen,
        webhook_secret: secret.into(),
        webhook_refuse: 0.2,
        settle_s: 20.0,
        ..Scenario::default()
    };
    let tokens = Tokens::minted(SECRET, 600);
    let report = runner::run(scenario, tokens, RunOptions::default()).await.unwrap();
    println!("{}", report.table());
    assert!(report.clean(), "every push once, signed and keyed: {}", report.table());
    assert_eq!(gw.metric("gateway_push_total{result=\"sent\"}").await, 200.0);
    assert_eq!(gw.metric("gateway_push_total{result=\"failed\"}").await, 0.0);
    let retried = gw.metric("gateway_push_total{result=\"retried\"}").await;
    assert!(retried > 10.0, "about a fifth refused once and retried: {retried}");
}
