//! What operators run on: the alert rules pass `promtool check rules` (Debian's `prometheus`
//! package; `.ci/run` installs it), every alert points at a section of `deploy/RUNBOOK.md`, and
//! every metric a dashboard panel or a rule names is exported by a running gateway.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metric names (`gateway_…`, `process_…`) a text mentions.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["gateway_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end =
                tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            out.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn the_alert_rules_pass_promtool_and_each_has_a_runbook_section() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian: apt-get install prometheus; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
    let runbook = deploy("RUNBOOK.md");
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let text = deploy("prometheus/alerts.yml");
    let urls: Vec<&str> =
        text.lines().filter_map(|l| l.trim().strip_prefix("runbook_url: ")).collect();
    assert_eq!(urls.len(), text.matches("- alert:").count(), "every alert has a runbook_url");
    for url in urls {
        let anchor =
            url.trim_matches('"').rsplit_once("RUNBOOK.md#").expect("a RUNBOOK.md section").1;
        assert!(
            anchors.iter().any(|a| a == anchor),
            "no RUNBOOK.md section #{anchor} (have {anchors:?})"
        );
    }
}

#[tokio::test]
async fn every_metric_a_panel_or_rule_names_is_exported() {
    let gw = TestGateway::start(&[]);
    let exposition = gw.http.get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let mut wanted = named(&deploy("grafana/gateway.json"));
    wanted.extend(named(&deploy("prometheus/alerts.yml")));
    assert!(wanted.len() > 15, "{wanted:?}");
    let missing: Vec<&String> = wanted.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
    // The exposition itself is well formed (HELP on every family, families together).
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write;
    check.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let gateway_problems: Vec<&str> = said.lines().filter(|l| l.contains("gateway_")).collect();
    assert!(gateway_problems.is_empty(), "promtool check metrics: {said}");
}

#[tokio::test]
async fn the_latency_histograms_move_under_load() {
    let gw = TestGateway::start(&[]);
    let mut ws = gw.device("hist", "").await;
    let mut sse = gw.sse("hist", "", None).await;
    sse.hello().await;
    gw.create_turn("hist", "c", "th").await;
    let (items, _) = deltas(50, "h");
    let mut all = items;
    all.push(end_item());
    assert_eq!(gw.send_items("th", &all).await.0, 200);
    assert_eq!(ws.until_end("th").await.len(), 52);
    for _ in 0..52 {
        sse.event().await;
    }
    let count = |s: &'static str| {
        let gw = &gw;
        async move { gw.metric(s).await }
    };
    assert_eq!(count("gateway_delivery_latency_seconds_count{transport=\"ws\"}").await, 52.0);
    assert_eq!(count("gateway_delivery_latency_seconds_count{transport=\"sse\"}").await, 52.0);
    assert_eq!(count("gateway_turn_first_delta_seconds_count").await, 1.0);
    assert!(count("gateway_backplane_append_seconds_count").await >= 2.0);
    let le10 = count("gateway_delivery_latency_seconds_bucket{transport=\"ws\",le=\"10\"}").await;
    assert_eq!(le10, 52.0, "every delivery within 10 s");
    let events = count(
        "gateway_http_request_duration_seconds_count{route=\"/v1/turns/{turn_id}/events\",status_class=\"2xx\"}",
    )
    .await;
    assert_eq!(events, 1.0);
    // Per tenant: these tokens carry no tid; the producer's turn counts under the user's.
    assert_eq!(count("gateway_tenant_events_delivered_total{tenant=\"none\"}").await, 104.0);
    assert_eq!(count("gateway_tenant_endpoints{tenant=\"none\"}").await, 2.0);
    assert_eq!(count("gateway_tenant_turns_total{tenant=\"none\"}").await, 1.0);
    assert_eq!(count("gateway_tenant_deltas_total{tenant=\"none\"}").await, 51.0);
}
