//! Every setting with its default and what it does: the source of `genconfig`, of the unknown
//! variable check and of the README's table.

/// The Agent Card's skills unless `a2a_skills` says otherwise.
pub const DEFAULT_SKILLS: &str = r#"[{"id":"tasks","name":"Tasks and turns","description":"Get, list, follow and cancel a user's long-running tasks and assistant turns","tags":["tasks","streaming"]}]"#;

/// Every setting: TOML key (the variable is `GATEWAY_` + its upper case), default, meaning.
/// The README's configuration reference is this table.
pub const SETTINGS: &[(&str, &str, &str)] = &[
    ("listen", "127.0.0.1:8080", "address to bind; port 0 picks a free port"),
    ("node_id", "random", "this node's id in presence"),
    (
        "auth_hs256_secret",
        "none",
        "HS256 secret (at least 16 bytes); required unless --dev or a public key is set",
    ),
    ("auth_public_key_file", "none", "PEM public key for RS256 or ES256"),
    (
        "auth_public_key_alg",
        "from the key",
        "RS256 or ES256, when the key file should be pinned to one",
    ),
    ("auth_audience", "not checked", "required `aud`"),
    ("auth_issuer", "not checked", "required `iss`"),
    ("auth_leeway_ms", "5000", "clock skew allowed on exp / nbf"),
    (
        "allowed_origins",
        "none",
        "comma-separated Origins allowed on /v1/ws and /v1/sse (`*` for any); requests without Origin are always allowed; --dev: any",
    ),
    (
        "redis_url",
        "unset: embedded",
        "Redis for presence, log and cross-node fan-out: `redis://host:port` (a single instance, or any node of a cluster) or `redis+cluster://host:port,host:port`",
    ),
    (
        "redis_prefix",
        "gw",
        "prefix of every Redis key and channel (deployments sharing a Redis differ by it)",
    ),
    (
        "redis_append_linger_us",
        "0",
        "while appends arrive faster than one per this long, a batch of them waits up to this long for more before going to Redis (fewer, larger script calls; 0: never waits)",
    ),
    ("store_url", "unset: embedded", "postgres://… for the turn store"),
    (
        "store_schema",
        "none",
        "PostgreSQL schema of the turn store (created if missing), to share one database",
    ),
    ("data_dir", "./data", "where the embedded store and the embedded outbox live"),
    (
        "store_max_text_bytes",
        "8388608",
        "longest turn text kept and stored; a longer turn is stored cut to it and flagged `truncated`",
    ),
    (
        "store_retention_ms",
        "0",
        "stored turns completed longer ago than this are purged in the background (0: kept)",
    ),
    ("max_history_page", "100", "largest `limit` of a history page"),
    (
        "outbox_retry_base_ms",
        "500",
        "first retry delay of a turn the store did not take; doubles per failure",
    ),
    (
        "outbox_retry_max_ms",
        "60000",
        "longest delay between retries of a turn the store did not take",
    ),
    ("presence_ttl_ms", "30000", "how long a dead node's endpoints stay listed"),
    ("heartbeat_ms", "15000", "WebSocket ping / SSE heartbeat interval"),
    ("log_retention", "10000", "events kept per user log for resume"),
    ("log_retention_ms", "3600000", "how long an event stays in a user log for resume"),
    (
        "log_retention_bytes",
        "16777216",
        "bytes of events kept per user log for resume (the older go first)",
    ),
    (
        "log_memory_bytes",
        "536870912",
        "bytes all user logs of this node may hold together; past it the largest logs are trimmed first",
    ),
    (
        "turn_idle_timeout_ms",
        "600000",
        "a streaming turn with no event for this long is ended `failed` (`error: \"idle_timeout\"`)",
    ),
    (
        "max_connections",
        "from the descriptor limit",
        "open TCP connections this node accepts; past it new ones get 503 (/healthz, /readyz and /metrics still answer)",
    ),
    (
        "max_pending_per_ip",
        "256",
        "connections from one IP address that have not yet presented a valid token; past it 429",
    ),
    (
        "max_header_bytes",
        "32768",
        "largest request head (request line and headers): 431 `headers_too_large` above it",
    ),
    (
        "header_read_timeout_ms",
        "10000",
        "a connection must send a whole request head within this long (also one that sends nothing)",
    ),
    (
        "body_idle_timeout_ms",
        "60000",
        "a streamed request body that completes no NDJSON item for this long is answered 408",
    ),
    (
        "client_publish_per_sec",
        "20",
        "client frames that publish (notification.read, cancels) per connection and second, burst twice that; beyond: error `rate_limited`",
    ),
    ("max_frame_bytes", "65536", "largest client frame (close 1009 above it)"),
    (
        "outbound_queue",
        "1024",
        "retired (PROTOCOL.md v1.1): accepted with a warning, does nothing; an endpoint that falls behind reads on from the log",
    ),
    ("max_endpoints_per_user", "32", "endpoints one user may hold (429 above it)"),
    ("max_body_bytes", "1048576", "largest JSON request body (413 above it)"),
    ("max_ndjson_line_bytes", "1048576", "largest NDJSON line of a streamed events body"),
    ("max_ndjson_body_bytes", "67108864", "largest streamed NDJSON body"),
    ("dedup_window_ms", "3600000", "how long a notification dedup_key is remembered"),
    (
        "notify_budget_per_hour",
        "0",
        "live notifications below high per user and window before the rest is digested (0: no budget); a user's budget_per_hour overrides it",
    ),
    ("notify_budget_window_ms", "3600000", "the sliding window the notification budget counts in"),
    (
        "inbox_retention_ms",
        "2592000000",
        "how long a notification stays in the inbox (and its counts)",
    ),
    (
        "push_webhook_url",
        "unset: no push",
        "where delivered notifications of users with no live endpoint (and every critical one) are POSTed, and retracts",
    ),
    (
        "push_webhook_secret",
        "unset",
        "HMAC-SHA256 key of X-Gateway-Signature (at least 16 bytes); required with push_webhook_url",
    ),
    (
        "push_min_priority",
        "high",
        "the lowest priority pushed to an offline user (low, normal, high, critical)",
    ),
    ("turn_retention_ms", "3600000", "how long an ended turn's state (and idempotency) is kept"),
    (
        "task_max_artifact_bytes",
        "4194304",
        "bytes of artifact chunks one task may hold (more: 400 artifact_too_large)",
    ),
    (
        "max_open_tasks",
        "1000",
        "tasks of one user not yet stored (open, or ended and waiting for the store); more: 429",
    ),
    (
        "public_url",
        "unset: from the request's Host",
        "the gateway's public base URL (http or https), for the A2A Agent Card",
    ),
    (
        "a2a_agent_url",
        "unset: SendMessage answers -32004",
        "where A2A SendMessage / SendStreamingMessage are forwarded (POST, 10 s timeout)",
    ),
    ("a2a_name", "Assistant gateway", "the Agent Card's name"),
    (
        "metrics_top_tenants",
        "20",
        "tenants (JWT tid) with a metrics label of their own, by volume; the rest are other",
    ),
    (
        "a2a_description",
        "Follows a user's tasks and assistant turns",
        "the Agent Card's description",
    ),
    (
        "a2a_skills",
        "one skill, tasks",
        "the Agent Card's skills: a JSON array of {id, name, description, tags}",
    ),
    ("drain_timeout_ms", "10000", "how long a drain waits for endpoints to close before exiting"),
    ("reconnect_after_ms", "1000", "after_ms of the reconnect frame, SSE retry: on drain"),
    (
        "write_stall_ms",
        "30000",
        "a connection whose writes stay blocked this long is dropped (a peer that stopped reading)",
    ),
    (
        "ws_read_buffer_bytes",
        "256",
        "per-WebSocket read chunk; client frames are small, and a larger one still fits (the buffer grows)",
    ),
    ("ws_write_buffer_bytes", "8192", "per-WebSocket write batching target"),
    ("log_format", "text", "text or json (structured logs)"),
];
