//! `gateway genconfig` and `gateway check-config` on the real binary: the generated file is
//! accepted as it is, bad settings exit 64 naming each, nothing is bound.

mod common;

use std::process::Command;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the gateway")
}

#[test]
fn genconfig_output_checks_clean_and_bad_settings_exit_64_naming_each() {
    let generated = gateway(&["genconfig"], &[]);
    assert!(generated.status.success());
    let text = String::from_utf8(generated.stdout).unwrap();
    assert!(text.contains("# heartbeat_ms = 15000"), "{text}");
    let dir = common::temp_dir("genconfig");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, &text).unwrap();
    let secret = ("GATEWAY_AUTH_HS256_SECRET", "a-secret-of-32-bytes-0123456789ab");
    // A port already taken: check-config must not try to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let ok = gateway(
        &["--config", file.to_str().unwrap(), "check-config"],
        &[secret, ("GATEWAY_LISTEN", &listen)],
    );
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "configuration ok");

    std::fs::write(&file, "heartbeat_ms = \"often\"\n").unwrap();
    let bad = gateway(
        &["--config", file.to_str().unwrap(), "check-config"],
        &[secret, ("GATEWAY_MAX_OPEN_TASKS", "0"), ("GATEWAY_A2A_SKILLS", "[1]")],
    );
    assert_eq!(bad.status.code(), Some(64));
    let said = String::from_utf8_lossy(&bad.stderr);
    for name in ["heartbeat_ms", "GATEWAY_MAX_OPEN_TASKS", "GATEWAY_A2A_SKILLS"] {
        assert!(said.contains(name), "{name} not named: {said}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
