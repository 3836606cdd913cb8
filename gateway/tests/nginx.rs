//! `deploy/nginx/gateway.conf` in front of two Redis-mode nodes, in a real nginx (Debian's
//! package; `.ci/run` installs it): the load tester's chaos scenario through it ends with zero
//! violations, while one node is drained mid-run.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use loadtest::runner::{self, RunOptions};
use loadtest::scenario::Scenario;
use loadtest::tokens::Tokens;

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx with the shipped snippet, its upstream pointed at `nodes`, listening on `port`.
fn nginx(nodes: [&str; 2], port: u16) -> Nginx {
    let snippet = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/nginx/gateway.conf"
    ))
    .unwrap();
    let snippet = snippet
        .replace("127.0.0.1:8081", nodes[0])
        .replace("127.0.0.1:8082", nodes[1])
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    let dir = temp_dir("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(dir.join("gateway.conf"), snippet).unwrap();
    let main = format!(
        "worker_processes 1;\nerror_log {d}/logs/error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         include {d}/gateway.conf;\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let mut child = Command::new("nginx")
        .args([
            "-p",
            dir.to_str().unwrap(),
            "-c",
            dir.join("nginx.conf").to_str().unwrap(),
            "-g",
            "daemon off;",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("nginx (Debian: apt-get install nginx; .ci/run installs it)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Nginx(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "nginx did not listen: {}",
        std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_through_nginx_in_front_of_two_nodes_with_one_drained_has_no_violation() {
    let redis = common::redis_server::TestRedis::start();
    let prefix = format!("ng{:x}", rand::random::<u32>());
    let env = [
        ("GATEWAY_REDIS_URL", redis.url.as_str()),
        ("GATEWAY_REDIS_PREFIX", prefix.as_str()),
        ("GATEWAY_RECONNECT_AFTER_MS", "200"),
    ];
    let a = TestGateway::start(&env);
    let b = TestGateway::start(&env);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _nginx = nginx([&a.addr, &b.addr], port);
    let scenario = Scenario {
        url: format!("http://127.0.0.1:{port}"),
        users: 20,
        devices: 3,
        sse_ratio: 0.34,
        duration_s: 4.0,
        turn_rate: 10.0,
        max_turns: 20,
        tokens_per_turn: 30,
        token_rate: 100.0,
        notification_rate: 20.0,
        chaos_rate: 0.2,
        ..Scenario::default()
    };
    let tokens = Tokens::minted(SECRET, 600);
    let opts = RunOptions { gateway_pids: vec![a.pid(), b.pid()], ..Default::default() };
    let run = tokio::spawn(runner::run(scenario, tokens, opts));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.signal("TERM");
    let report = run.await.unwrap().unwrap();
    println!("{}", report.table());
    assert!(report.clean(), "{}", report.table());
    assert!(report.reconnects > 10, "{}", report.table());
    assert!(report.events >= 3 * report.published / 2, "every event reached several devices");
}
