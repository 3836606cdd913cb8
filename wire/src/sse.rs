//! SSE framing: event ids are `<epoch>:<seq>` so `Last-Event-ID` is a resume point.

/// Formats the SSE `id:` of a log event.
pub fn event_id(epoch: &str, seq: u64) -> String {
    format!("{epoch}:{seq}")
}

/// Parses `<epoch>:<seq>` (the epoch may itself hold colons; the seq is after the last one).
/// Returns `None` when the value is not of that form.
pub fn parse_event_id(value: &str) -> Option<(&str, u64)> {
    let (epoch, seq) = value.trim().rsplit_once(':')?;
    if epoch.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((epoch, seq.parse().ok()?))
}

/// The SSE comment line sent as a heartbeat.
pub const PING: &str = ": ping\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        assert_eq!(parse_event_id(&event_id("e1", 42)), Some(("e1", 42)));
        assert_eq!(parse_event_id("a:b:7"), Some(("a:b", 7)));
        assert_eq!(parse_event_id(":7"), None);
        assert_eq!(parse_event_id("e:"), None);
        assert_eq!(parse_event_id("e:-1"), None);
        assert_eq!(parse_event_id("e7"), None);
        assert_eq!(parse_event_id("e:99999999999999999999999"), None);
    }
}
