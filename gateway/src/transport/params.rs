//! Query parameters of `/v1/ws` and `/v1/sse`, and the resume point they ask for.

use wire::Surface;

use crate::error::ApiError;
use crate::hub::ResumeFrom;
use crate::ids;

/// What a connecting client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    pub device_id: String,
    pub surface: Surface,
    /// `None`: a fresh connect. `Some(None)`: a resume was asked for but cannot be honoured
    /// (half a resume point), so the answer is `resumed: false`.
    pub resume: Option<Option<ResumeFrom>>,
}

/// Parses the query (and, for SSE, the `Last-Event-ID` header). Precedence for SSE: the header,
/// then `last_event_id`, then `epoch` + `after`.
pub fn parse(query: Option<&str>, last_event_id: Option<&str>) -> Result<ConnectParams, ApiError> {
    let mut device_id = None;
    let mut surface = Surface::Other;
    let (mut epoch, mut after, mut query_id) = (None, None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "device_id" => {
                if !ids::valid(&v) {
                    return Err(ApiError::bad_request(
                        "device_id must be 1-128 characters of [A-Za-z0-9._:-]",
                    ));
                }
                device_id = Some(v.into_owned());
            }
            "surface" => {
                surface = Surface::parse(&v).ok_or_else(|| {
                    ApiError::bad_request(
                        "surface must be one of web, ios, android, desktop, teams, outlook, other",
                    )
                })?;
            }
            "epoch" => epoch = Some(v.into_owned()).filter(|e| !e.is_empty()),
            "after" => {
                let n: u64 = v.parse().map_err(|_| {
                    ApiError::bad_request(
                        "after must be a non-negative integer (the last seq the client has)",
                    )
                })?;
                after = Some(n);
            }
            "last_event_id" => {
                let (e, s) = wire::sse::parse_event_id(&v)
                    .ok_or_else(|| ApiError::bad_request("last_event_id must be <epoch>:<seq>"))?;
                query_id = Some(ResumeFrom { epoch: e.to_owned(), after: s });
            }
            _ => {}
        }
    }
    let resume = if let Some(header) = last_event_id {
        // A browser echoes what we sent; anything else cannot be honoured, but is no reason to
        // refuse the stream (EventSource would give up on a 400).
        Some(
            wire::sse::parse_event_id(header)
                .map(|(e, s)| ResumeFrom { epoch: e.to_owned(), after: s }),
        )
    } else if let Some(id) = query_id {
        Some(Some(id))
    } else if epoch.is_some() || after.is_some() {
        Some(epoch.zip(after).map(|(epoch, after)| ResumeFrom { epoch, after }))
    } else {
        None
    };
    Ok(ConnectParams { device_id: device_id.unwrap_or_else(|| ids::fresh("d")), surface, resume })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rf(epoch: &str, after: u64) -> Option<Option<ResumeFrom>> {
        Some(Some(ResumeFrom { epoch: epoch.into(), after }))
    }

    #[test]
    fn defaults_and_validation() {
        let p = parse(None, None).unwrap();
        assert!(p.device_id.starts_with("d_"));
        assert_eq!(p.surface, Surface::Other);
        assert_eq!(p.resume, None);
        let p = parse(Some("device_id=phone.1&surface=ios"), None).unwrap();
        assert_eq!((p.device_id.as_str(), p.surface), ("phone.1", Surface::Ios));
        assert!(parse(Some("device_id=a%20b"), None).is_err());
        assert!(parse(Some("surface=fax"), None).is_err());
        assert!(parse(Some("after=-1"), None).is_err());
        assert!(parse(Some("last_event_id=nope"), None).is_err());
    }

    #[test]
    fn resume_precedence() {
        assert_eq!(parse(Some("epoch=e&after=4"), None).unwrap().resume, rf("e", 4));
        assert_eq!(parse(Some("after=4"), None).unwrap().resume, Some(None), "half a resume point");
        assert_eq!(
            parse(Some("epoch=e&after=4&last_event_id=q:7"), None).unwrap().resume,
            rf("q", 7)
        );
        assert_eq!(parse(Some("last_event_id=q:7"), Some("h:9")).unwrap().resume, rf("h", 9));
        assert_eq!(parse(None, Some("garbage")).unwrap().resume, Some(None));
    }
}
