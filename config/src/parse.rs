//! Parsers for single values; each returns a message that completes "SETTING: …".

use std::net::SocketAddr;

pub fn int(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let t = raw.trim();
    let v: u64 =
        t.replace('_', "").parse().map_err(|_| format!("{raw:?} is not a whole number"))?;
    if v < min || v > max {
        return Err(format!("{v} is out of range: must be between {min} and {max}"));
    }
    Ok(v)
}

pub fn socket_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim().parse().map_err(|_| {
        format!("{raw:?} is not IP:port (e.g. 127.0.0.1:8080, [::1]:8080; port 0 picks one)")
    })
}

pub fn non_empty(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(t.to_owned())
}

/// Non-empty text of at most `max` bytes without control characters.
pub fn text(raw: &str, max: usize) -> Result<String, String> {
    let t = non_empty(raw)?;
    if t.len() > max || t.chars().any(char::is_control) {
        return Err(format!("must be at most {max} bytes without control characters"));
    }
    Ok(t)
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
pub fn origin(raw: &str) -> Result<String, String> {
    let o = raw.trim();
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
        .ok_or_else(|| format!("origin {o:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
        return Err(format!("origin {o:?} must be scheme://host[:port] with no path"));
    }
    Ok(o.to_ascii_lowercase())
}

pub fn node_id(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let ok = (1..=64).contains(&t.len())
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!("{t:?} must be 1-64 characters of [A-Za-z0-9._-]"));
    }
    Ok(t.to_owned())
}

pub fn url_with_schemes(raw: &str, schemes: &[&str]) -> Result<String, String> {
    let t = raw.trim();
    for part in t.split(',') {
        let part = part.trim();
        if !schemes.iter().any(|s| part.starts_with(&format!("{s}://")) && part.len() > s.len() + 3)
        {
            return Err(format!(
                "{part:?} must be a URL starting with {}",
                schemes.join(":// or ") + "://"
            ));
        }
    }
    Ok(t.to_owned())
}

/// `GATEWAY_REDIS_URL`: one `redis://` (or `rediss://`) URL, a comma-separated list of them
/// (cluster seeds), or `redis+cluster://host:port,host:port`.
pub fn redis_url(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if let Some(rest) = t.strip_prefix("redis+cluster://") {
        for seed in rest.split(',') {
            let seed = seed.trim().trim_end_matches('/');
            let ok = seed
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(format!("cluster seed {seed:?} must be host:port"));
            }
        }
        return Ok(t.to_owned());
    }
    url_with_schemes(t, &["redis", "rediss"])
}
