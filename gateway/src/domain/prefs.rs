//! Notification preferences: a document validated field by field (an error names the field by
//! its path), and the disposition rule of PROTOCOL.md v1.1, §Notifications, as a pure function
//! of the preferences, the notification and the time.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Map, Value};
use wire::Priority;
use wire::api::Disposition;
use wire::prefs::{CategoryOverride, CategoryPrefs, Preferences, QuietHours};

/// A bad preferences document: the field, by path, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PrefError {
    pub path: String,
    pub message: String,
}

fn bad(path: &str, message: &str) -> PrefError {
    PrefError { path: path.to_owned(), message: message.to_owned() }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Validates a whole document; a field left out (or null) takes its default.
pub fn validate(v: &Value) -> Result<Preferences, PrefError> {
    let top = object(v, "")?;
    let mut p = Preferences::default();
    for (k, v) in top {
        match k.as_str() {
            "default" if !v.is_null() => p.default = category(v, "default", &p.default)?,
            "categories" if !v.is_null() => {
                for (name, c) in object(v, "categories")? {
                    let path = format!("categories.{name}");
                    if !wire::api::valid_name(name, 128) {
                        return Err(bad(
                            &path,
                            "a category is 1 to 128 bytes, no control character",
                        ));
                    }
                    if !c.is_null() {
                        p.categories.insert(name.clone(), overrides(c, &path)?);
                    }
                }
            }
            "quiet_hours" if !v.is_null() => p.quiet_hours = Some(quiet_hours(v)?),
            "mute_until" if !v.is_null() => {
                let s = v
                    .as_str()
                    .ok_or_else(|| bad("mute_until", "must be an RFC 3339 time or null"))?;
                s.parse::<Timestamp>()
                    .map_err(|_| bad("mute_until", "must be an RFC 3339 time or null"))?;
                p.mute_until = Some(s.to_owned());
            }
            "budget_per_hour" if !v.is_null() => {
                let n = v.as_u64().filter(|n| *n <= u32::MAX as u64);
                p.budget_per_hour =
                    Some(n.ok_or_else(|| {
                        bad("budget_per_hour", "must be a whole number ≥ 0 or null")
                    })? as u32);
            }
            "default" | "categories" | "quiet_hours" | "mute_until" | "budget_per_hour" => {}
            other => return Err(bad(other, "unknown field")),
        }
    }
    Ok(p)
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, PrefError> {
    v.as_object()
        .ok_or_else(|| bad(if path.is_empty() { "(document)" } else { path }, "must be an object"))
}

fn boolean(v: &Value, path: &str) -> Result<bool, PrefError> {
    v.as_bool().ok_or_else(|| bad(path, "must be true or false"))
}

fn priority(v: &Value, path: &str) -> Result<Priority, PrefError> {
    serde_json::from_value(v.clone())
        .map_err(|_| bad(path, "must be low, normal, high or critical"))
}

fn category(v: &Value, path: &str, base: &CategoryPrefs) -> Result<CategoryPrefs, PrefError> {
    let o = overrides(v, path)?;
    Ok(CategoryPrefs {
        enabled: o.enabled.unwrap_or(base.enabled),
        min_priority: o.min_priority.unwrap_or(base.min_priority),
        push: o.push.unwrap_or(base.push),
    })
}

fn overrides(v: &Value, path: &str) -> Result<CategoryOverride, PrefError> {
    let mut o = CategoryOverride::default();
    for (k, v) in object(v, path)? {
        let at = format!("{path}.{k}");
        match k.as_str() {
            _ if v.is_null() => {}
            "enabled" => o.enabled = Some(boolean(v, &at)?),
            "push" => o.push = Some(boolean(v, &at)?),
            "min_priority" => o.min_priority = Some(priority(v, &at)?),
            _ => return Err(bad(&at, "unknown field")),
        }
    }
    Ok(o)
}

fn quiet_hours(v: &Value) -> Result<QuietHours, PrefError> {
    let o = object(v, "quiet_hours")?;
    let text = |k: &str| -> Result<String, PrefError> {
        let at = format!("quiet_hours.{k}");
        o.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(&at, "is required, a string"))
    };
    if let Some(k) = o.keys().find(|k| !["tz", "from", "until", "days"].contains(&k.as_str())) {
        return Err(bad(&format!("quiet_hours.{k}"), "unknown field"));
    }
    let tz = text("tz")?;
    TimeZone::get(&tz)
        .map_err(|_| bad("quiet_hours.tz", "must be an IANA time zone (Europe/Paris)"))?;
    let (from, until) = (text("from")?, text("until")?);
    clock(&from).ok_or_else(|| bad("quiet_hours.from", "must be HH:MM (24 h)"))?;
    clock(&until).ok_or_else(|| bad("quiet_hours.until", "must be HH:MM (24 h)"))?;
    let days = match o.get("days") {
        None | Some(Value::Null) => DAYS.iter().map(|d| (*d).to_owned()).collect(),
        Some(Value::Array(a)) => {
            let mut days = Vec::new();
            for d in a {
                match d.as_str().filter(|d| DAYS.contains(d)) {
                    Some(d) if !days.iter().any(|x| x == d) => days.push(d.to_owned()),
                    Some(_) => {}
                    None => return Err(bad("quiet_hours.days", "must name days as mon … sun")),
                }
            }
            days
        }
        Some(_) => return Err(bad("quiet_hours.days", "must be an array of days")),
    };
    Ok(QuietHours { tz, from, until, days })
}

/// `HH:MM` (24 h).
fn clock(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

fn day_name(d: Weekday) -> &'static str {
    DAYS[d.to_monday_zero_offset() as usize]
}

/// Whether `now` falls inside the quiet hours: a window starts at `from` on each of its days and
/// ends at `until`, the next day when `until` is not after `from`.
pub fn in_quiet_hours(q: &QuietHours, now: Timestamp) -> bool {
    let (Ok(tz), Some(from), Some(until)) = (TimeZone::get(&q.tz), clock(&q.from), clock(&q.until))
    else {
        return false;
    };
    let local = now.to_zoned_datetime(tz);
    let (time, today) = (local.time(), local.weekday());
    let starts = |d: Weekday| q.days.iter().any(|x| x == day_name(d));
    if from < until {
        starts(today) && time >= from && time < until
    } else if from == until {
        false
    } else {
        (starts(today) && time >= from) || (starts(today.previous()) && time < until)
    }
}

/// When the quiet-hours window that holds `now` ends (`None`: `now` is outside any).
pub fn quiet_hours_end(q: &QuietHours, now: Timestamp) -> Option<Timestamp> {
    if !in_quiet_hours(q, now) {
        return None;
    }
    let (tz, until, from) = (TimeZone::get(&q.tz).ok()?, clock(&q.until)?, clock(&q.from)?);
    let local = now.to_zoned_datetime(tz.clone());
    let mut day = local.date();
    if from > until && local.time() >= from {
        day = day.tomorrow().ok()?;
    }
    Some(day.to_datetime(until).to_zoned_datetime(tz).ok()?.timestamp())
}

/// Why a notification was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    MinPriority,
    Muted,
    QuietHours,
}

/// The disposition of a notification (PROTOCOL.md v1.1, §Notifications, in its order);
/// `delivered_in_window`: the user's live deliveries below `high` in the budget window;
/// `budget`: the budget that applies (0: none).
pub fn disposition(
    p: &Preferences,
    category: &str,
    priority: Priority,
    now: Timestamp,
    delivered_in_window: u64,
    budget: u32,
) -> (Disposition, Option<Hold>) {
    if priority == Priority::Critical {
        return (Disposition::Delivered, None);
    }
    let c = p.category(category);
    if !c.enabled {
        return (Disposition::Suppressed, None);
    }
    if priority.rank() < c.min_priority.rank() {
        return (Disposition::Held, Some(Hold::MinPriority));
    }
    let muted =
        p.mute_until.as_deref().and_then(|m| m.parse::<Timestamp>().ok()).is_some_and(|m| m > now);
    if muted {
        return (Disposition::Held, Some(Hold::Muted));
    }
    if p.quiet_hours.as_ref().is_some_and(|q| in_quiet_hours(q, now)) {
        return (Disposition::Held, Some(Hold::QuietHours));
    }
    if priority.rank() < Priority::High.rank() && budget > 0 && delivered_in_window >= budget as u64
    {
        return (Disposition::Digested, None);
    }
    (Disposition::Delivered, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_bad_document_names_the_field() {
        let cases = [
            (
                json!({"quiet_hours": {"tz": "Mars/Base", "from": "22:00", "until": "07:00"}}),
                "quiet_hours.tz",
            ),
            (
                json!({"categories": {"mentions": {"min_priority": "urgent"}}}),
                "categories.mentions.min_priority",
            ),
            (json!({"default": {"enabled": "yes"}}), "default.enabled"),
            (json!({"colour": 1}), "colour"),
            (
                json!({"quiet_hours": {"tz": "UTC", "from": "25:00", "until": "07:00"}}),
                "quiet_hours.from",
            ),
            (json!({"mute_until": "tomorrow"}), "mute_until"),
            (json!({"budget_per_hour": -1}), "budget_per_hour"),
        ];
        for (doc, path) in cases {
            assert_eq!(validate(&doc).unwrap_err().path, path, "{doc}");
        }
        assert_eq!(validate(&json!({})).unwrap(), Preferences::default());
    }

    #[test]
    fn quiet_hours_span_midnight_in_the_users_zone_and_belong_to_the_day_they_start() {
        // 22:00–07:00 in Paris (UTC+1 in winter), starting only on Fridays.
        let q = QuietHours {
            tz: "Europe/Paris".into(),
            from: "22:00".into(),
            until: "07:00".into(),
            days: vec!["fri".into()],
        };
        assert!(in_quiet_hours(&q, at("2026-11-27T21:30:00Z")), "Friday 22:30 Paris");
        assert!(
            in_quiet_hours(&q, at("2026-11-28T05:59:00Z")),
            "Saturday 06:59 Paris, Friday's window"
        );
        assert!(!in_quiet_hours(&q, at("2026-11-28T06:00:00Z")), "07:00 is out");
        assert!(!in_quiet_hours(&q, at("2026-11-28T21:30:00Z")), "Saturday's evening: no window");
        assert!(!in_quiet_hours(&q, at("2026-11-27T20:59:00Z")), "Friday 21:59 Paris");
        let end = quiet_hours_end(&q, at("2026-11-27T21:30:00Z")).unwrap();
        assert_eq!(end, at("2026-11-28T06:00:00Z"), "Saturday 07:00 Paris");
        assert_eq!(quiet_hours_end(&q, at("2026-11-28T05:00:00Z")), Some(end));
    }

    #[test]
    fn the_rules_apply_in_the_protocols_order() {
        let now = at("2026-11-30T12:00:00Z");
        let mut p = validate(
            &json!({"categories": {"off": {"enabled": false}, "picky": {"min_priority": "high"}}}),
        )
        .unwrap();
        let d = |p: &Preferences, c, pr, used| disposition(p, c, pr, now, used, 2).0;
        assert_eq!(d(&p, "off", Priority::Critical, 0), Disposition::Delivered);
        assert_eq!(d(&p, "off", Priority::High, 0), Disposition::Suppressed);
        assert_eq!(d(&p, "picky", Priority::Normal, 0), Disposition::Held);
        assert_eq!(d(&p, "x", Priority::Normal, 2), Disposition::Digested);
        assert_eq!(d(&p, "x", Priority::High, 2), Disposition::Delivered, "high is not budgeted");
        p.mute_until = Some("2026-11-30T13:00:00Z".into());
        assert_eq!(
            disposition(&p, "x", Priority::Normal, now, 0, 0),
            (Disposition::Held, Some(Hold::Muted))
        );
        assert_eq!(
            d(&p, "off", Priority::Normal, 0),
            Disposition::Suppressed,
            "disabled before muted"
        );
    }
}
