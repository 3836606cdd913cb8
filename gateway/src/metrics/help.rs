//! The `# HELP` line of every metric the gateway exports: a dashboard reader learns what a
//! series means from `/metrics` itself.

/// (name, kind, help). Kinds: `c` counter, `g` gauge, `h` our fixed-bucket histogram, `x` the
/// exporter's histogram.
pub const HELP: &[(&str, char, &str)] = &[
    ("gateway_endpoints", 'g', "Live client endpoints on this node, by transport (ws, sse)"),
    ("gateway_events_published_total", 'c', "Log events appended by this node"),
    (
        "gateway_redis_append_batches_total",
        'c',
        "Redis mode: script calls that carried appends (the appends per call are \
         gateway_backplane_append_seconds_count over this)",
    ),
    ("gateway_events_delivered_total", 'c', "Log events written to endpoints of this node"),
    (
        "gateway_events_written_directly_total",
        'c',
        "Of those, written by the publisher straight into a caught-up WebSocket (no task woken)",
    ),
    (
        "gateway_slow_consumer_closes_total",
        'c',
        "Endpoints closed 4008: their next event left the log, or their writes stalled",
    ),
    (
        "gateway_auth_failures_total",
        'c',
        "Requests and connections refused for a missing or bad token",
    ),
    (
        "gateway_resume_total",
        'c',
        "Resume attempts by result (hit: every missed event replayed; miss: resumed false)",
    ),
    ("gateway_bad_frames_total", 'c', "Malformed or unknown client frames"),
    ("gateway_turns_started_total", 'c', "Turns created"),
    ("gateway_notifications_total", 'c', "Notifications accepted (deduplicated repeats excluded)"),
    (
        "gateway_notifications_deduplicated_total",
        'c',
        "Notifications answered from an earlier dedup_key",
    ),
    ("gateway_notifications_by_priority_total", 'c', "Notifications by priority"),
    (
        "gateway_notifications_by_category_total",
        'c',
        "Notifications by category (the first 64 seen, then other)",
    ),
    (
        "gateway_notification_dispositions_total",
        'c',
        "Notifications by disposition (delivered, held, digested, suppressed)",
    ),
    ("gateway_notification_digests_total", 'c', "notification.digest events published"),
    ("gateway_notification_marks_total", 'c', "Inbox marks (HTTP and client frames)"),
    (
        "gateway_push_total",
        'c',
        "Push webhook calls by result (queued, sent, failed for good, retried, retracted)",
    ),
    ("gateway_push_pending", 'g', "Push calls waiting in the push outbox"),
    ("gateway_log_bytes", 'g', "Bytes held by the user logs (or log caches) of this node"),
    (
        "gateway_backplane_up",
        'g',
        "1 when the backplane (Redis in Redis mode) answered the last readiness check, else 0",
    ),
    ("gateway_connections_open", 'g', "Open TCP connections, against GATEWAY_MAX_CONNECTIONS"),
    ("gateway_outbox_depth", 'g', "Finished turns and tasks waiting to be stored"),
    ("gateway_outbox_oldest_age_seconds", 'g', "Age of the oldest outbox entry (0: empty)"),
    (
        "gateway_outbox_set_aside",
        'g',
        "Outbox entries the store refused for good (for an operator)",
    ),
    (
        "gateway_turns_persisted_total",
        'c',
        "Outbox entries stored, by result (stored, already_stored, discarded)",
    ),
    ("gateway_store_retries_total", 'c', "Failed store attempts that will be retried"),
    (
        "gateway_delivery_latency_seconds",
        'h',
        "From an event's append on this node to its bytes written to an endpoint, by transport",
    ),
    (
        "gateway_turn_first_delta_seconds",
        'h',
        "From turn.start to the turn's first delta published",
    ),
    (
        "gateway_http_request_duration_seconds",
        'h',
        "HTTP request durations (to the response head) by route and status class",
    ),
    ("gateway_resume_replay_events", 'h', "Events replayed to an endpoint that resumed"),
    (
        "gateway_backplane_append_seconds",
        'h',
        "Latency of a conditional append to the log (memory or Redis)",
    ),
    ("gateway_store_write_seconds", 'h', "Latency of storing one outbox entry (a turn or a task)"),
];
