use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const SECRET: (&str, &str) = ("GATEWAY_AUTH_HS256_SECRET", "0123456789abcdef0123");

#[test]
fn defaults_follow_the_protocol_table() {
    let c = Config::load(None, env(&[SECRET]), false).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.auth_leeway_ms, 5000);
    assert_eq!(c.presence_ttl_ms, 30000);
    assert_eq!(c.heartbeat_ms, 15000);
    assert_eq!(c.log_retention, 10000);
    assert_eq!(c.max_frame_bytes, 65536);
    assert_eq!(c.outbound_queue, 1024);
    assert_eq!(c.max_endpoints_per_user, 32);
    assert_eq!(c.allowed_origins, OriginPolicy::NoneAllowed);
    assert!(c.redis_url.is_none() && c.store_url.is_none());
    assert!(c.node_id.starts_with("n_"));
}

#[test]
fn a_secret_or_key_is_required_unless_dev() {
    let err = Config::load(None, env(&[]), false).unwrap_err();
    assert!(err.names("GATEWAY_AUTH_HS256_SECRET"), "{err}");
    let dev = Config::load(None, env(&[]), true).unwrap();
    assert!(dev.dev_secret_generated);
    assert!(dev.auth_hs256_secret.as_ref().is_some_and(|s| s.len() >= 32));
    assert_eq!(dev.allowed_origins, OriginPolicy::Any);
}

#[test]
fn every_bad_value_is_reported_by_name() {
    let err = Config::load(
        None,
        env(&[
            SECRET,
            ("GATEWAY_LISTEN", "localhost"),
            ("GATEWAY_HEARTBEAT_MS", "soon"),
            ("GATEWAY_OUTBOUND_QUEUE", "0"),
            ("GATEWAY_ALLOWED_ORIGINS", "https://a.example,ftp://b"),
            ("GATEWAY_REDIS_URL", "http://x"),
            ("GATEWAY_LOG_FORMAT", "yaml"),
            ("GATEWAY_AUTH_PUBLIC_KEY_FILE", "/no/such/key.pem"),
        ]),
        false,
    )
    .unwrap_err();
    for name in [
        "GATEWAY_LISTEN",
        "GATEWAY_HEARTBEAT_MS",
        "GATEWAY_OUTBOUND_QUEUE",
        "GATEWAY_ALLOWED_ORIGINS",
        "GATEWAY_REDIS_URL",
        "GATEWAY_LOG_FORMAT",
        "GATEWAY_AUTH_PUBLIC_KEY_FILE",
    ] {
        assert!(err.names(name), "{name} not reported in:\n{err}");
    }
    assert_eq!(err.0.len(), 7, "{err}");
    let text = err.to_string();
    assert!(text.contains("GATEWAY_OUTBOUND_QUEUE: 0 is out of range"), "{text}");
}

#[test]
fn a_webhook_secret_is_reported_once_whether_missing_or_too_short() {
    let url = ("GATEWAY_PUSH_WEBHOOK_URL", "http://127.0.0.1:9/push");
    let missing = Config::load(None, env(&[SECRET, url]), false).unwrap_err();
    assert_eq!(missing.0.len(), 1, "{missing}");
    assert!(missing.to_string().contains("required with GATEWAY_PUSH_WEBHOOK_URL"), "{missing}");
    let short = ("GATEWAY_PUSH_WEBHOOK_SECRET", "too-short");
    let err = Config::load(None, env(&[SECRET, url, short]), false).unwrap_err();
    assert_eq!(err.0.len(), 1, "one message, not also \"required\":\n{err}");
    assert!(err.to_string().contains("at least 16 bytes"), "{err}");
}

#[test]
fn short_secret_is_refused() {
    let err =
        Config::load(None, env(&[("GATEWAY_AUTH_HS256_SECRET", "short")]), false).unwrap_err();
    assert!(err.to_string().contains("at least 16 bytes"), "{err}");
    assert_eq!(err.0.len(), 1, "one message, not also \"required\":\n{err}");
}

#[test]
fn ttl_must_exceed_heartbeat() {
    let err = Config::load(
        None,
        env(&[SECRET, ("GATEWAY_PRESENCE_TTL_MS", "2000"), ("GATEWAY_HEARTBEAT_MS", "5000")]),
        false,
    )
    .unwrap_err();
    assert!(err.names("GATEWAY_PRESENCE_TTL_MS"), "{err}");
}

#[test]
fn file_then_env_with_env_winning() {
    let dir = std::env::temp_dir().join(format!("gwcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:0\"\nheartbeat_ms = 500\nallowed_origins = [\"https://A.example\", \"http://b:3000\"]\nauth_hs256_secret = \"from-file-secret-1234\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[("GATEWAY_HEARTBEAT_MS", "700")]), false).unwrap();
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.heartbeat_ms, 700);
    assert_eq!(
        c.allowed_origins,
        OriginPolicy::List(vec!["https://a.example".into(), "http://b:3000".into()])
    );
    assert!(c.allowed_origins.allows(Some("https://a.example")));
    assert!(!c.allowed_origins.allows(Some("https://evil.example")));
    assert!(c.allowed_origins.allows(None));

    std::fs::write(&path, "heartbeat = 5\n").unwrap();
    let err = Config::load(Some(&path), env(&[SECRET]), false).unwrap_err();
    assert!(err.to_string().contains("(heartbeat): no such setting"), "{err}");

    std::fs::write(&path, "this is = not toml =").unwrap();
    let err = Config::load(Some(&path), env(&[SECRET]), false).unwrap_err();
    assert!(err.names("--config"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_variables_are_collected_not_fatal() {
    let c =
        Config::load(None, env(&[SECRET, ("GATEWAY_HEARTBEET_MS", "1"), ("PATH", "/bin")]), false)
            .unwrap();
    assert_eq!(c.unknown_variables, vec!["GATEWAY_HEARTBEET_MS".to_string()]);
}

#[test]
fn redis_urls_name_an_instance_or_cluster_seeds() {
    for ok in [
        "redis://127.0.0.1:6379",
        "redis://a:7000/,redis://b:7001/",
        "redis+cluster://a:7000,b:7001",
    ] {
        let c = Config::load(None, env(&[SECRET, ("GATEWAY_REDIS_URL", ok)]), false).unwrap();
        assert_eq!(c.redis_url.as_deref(), Some(ok));
    }
    for bad in ["redis+cluster://a,b:1", "redis://a,b:1", "memcached://x"] {
        let err = Config::load(None, env(&[SECRET, ("GATEWAY_REDIS_URL", bad)]), false);
        assert!(err.unwrap_err().names("GATEWAY_REDIS_URL"), "{bad}");
    }
    let err = Config::load(None, env(&[SECRET, ("GATEWAY_REDIS_PREFIX", "a:b")]), false);
    assert!(err.unwrap_err().names("GATEWAY_REDIS_PREFIX"));
}

#[test]
fn store_settings_are_checked_together() {
    let err = Config::load(None, env(&[SECRET, ("GATEWAY_STORE_SCHEMA", "s1")]), false);
    assert!(err.unwrap_err().names("GATEWAY_STORE_SCHEMA"), "a schema needs a PostgreSQL store");
    let err = Config::load(
        None,
        env(&[
            SECRET,
            ("GATEWAY_OUTBOX_RETRY_BASE_MS", "5000"),
            ("GATEWAY_OUTBOX_RETRY_MAX_MS", "100"),
        ]),
        false,
    );
    assert!(err.unwrap_err().names("GATEWAY_OUTBOX_RETRY_MAX_MS"));
    let err = Config::load(None, env(&[SECRET, ("GATEWAY_STORE_MAX_TEXT_BYTES", "1000")]), false);
    assert!(err.unwrap_err().names("GATEWAY_STORE_MAX_TEXT_BYTES"), "at least 4 MiB");
    let c = Config::load(None, env(&[SECRET]), false).unwrap();
    assert_eq!(
        (c.store_max_text_bytes, c.store_retention_ms, c.redis_prefix.as_str()),
        (8 << 20, 0, "gw")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Any value for any setting is taken or refused naming that setting, never a panic.
    #[test]
    fn any_value_of_any_setting_is_taken_or_named(
        which in proptest::sample::select(SETTINGS),
        value in ".{0,40}",
    ) {
        let var = format!("GATEWAY_{}", which.0.to_ascii_uppercase());
        match Config::load(None, env(&[SECRET, (var.as_str(), value.as_str())]), false) {
            Ok(_) => {}
            Err(errors) => proptest::prop_assert!(errors.names(&var), "{errors} does not name {var}"),
        }
    }
}
