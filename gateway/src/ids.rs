//! Identifiers and timestamps the gateway makes up.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A fresh id with a kind prefix (`c_` connection, `d_` device, `t_` turn, `n_` notification).
/// 64 random bits: unique across nodes without coordination.
pub fn fresh(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// The current time in RFC 3339 (UTC, milliseconds).
pub fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(now.millisecond() as u32 * 1_000_000).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

/// A Unix-milliseconds time in RFC 3339 (UTC, milliseconds).
pub fn rfc3339_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Whether a caller-chosen id (turn, device) is 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn valid(id: &str) -> bool {
    wire::api::valid_device_id(id)
}
