//! A small bounded load scenario, with chaos, through the real load tester: zero violations.

mod common;

use common::*;
use loadtest::runner::{self, RunOptions};
use loadtest::scenario::{Scenario, TokenArgs};
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
    let tokens = Tokens::from_args(
        &TokenArgs { secret: Some(SECRET.into()), token_file: None, tenants: 0 },
        600,
    )
    .unwrap();
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
    let tokens = Tokens::from_args(
        &TokenArgs { secret: Some(SECRET.into()), token_file: None, tenants: 0 },
        600,
    )
    .unwrap();
    let opts = RunOptions { gateway_pids: vec![a.pid(), b.pid()], ..Default::default() };
    let report = runner::run(scenario, tokens, opts).await.unwrap();
    println!("{}", report.table());
    assert!(report.clean(), "{}", report.table());
    assert!(report.reconnects > 10 && report.resume.count > 10, "{}", report.table());
    assert!(report.events >= 3 * report.published / 2, "every event reached several devices");
}
