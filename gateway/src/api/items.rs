//! Parsing one producer item (`{"delta"}`, `{"trace"}`, `{"end"}`) with messages that say what
//! is wrong, for the 400 that names the line.

use serde_json::Value;
use wire::TurnStatus;
use wire::api::{EndItem, EventItem, TraceItem};

/// The common shapes, parsed without building a `Value` (this runs once per token).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fast<'a> {
    #[serde(borrow, default)]
    delta: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    end: Option<EndItem>,
}

/// Parses one item from JSON text.
pub fn parse_item(text: &str) -> Result<EventItem, String> {
    match serde_json::from_str::<Fast>(text) {
        Ok(Fast { delta: Some(d), end: None }) => return Ok(EventItem::Delta(d.into_owned())),
        Ok(Fast { delta: None, end: Some(e) })
            if e.status != TurnStatus::Cancelled && e.status != TurnStatus::Streaming =>
        {
            return Ok(EventItem::End(e));
        }
        _ => {}
    }
    // Anything else (traces, and every mistake) takes the path with precise messages.
    parse_item_slow(text)
}

fn parse_item_slow(text: &str) -> Result<EventItem, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Object(mut map) = v else {
        return Err("an item must be a JSON object".into());
    };
    let keys: Vec<&str> =
        ["delta", "trace", "end"].into_iter().filter(|k| map.contains_key(*k)).collect();
    if keys.len() != 1 || map.len() != 1 {
        return Err(
            "an item must hold exactly one of \"delta\", \"trace\", \"end\" and nothing else"
                .into(),
        );
    }
    match keys[0] {
        "delta" => match map.remove("delta") {
            Some(Value::String(s)) => Ok(EventItem::Delta(s)),
            _ => Err("\"delta\" must be a string".into()),
        },
        "trace" => {
            let Some(Value::Object(mut t)) = map.remove("trace") else {
                return Err("\"trace\" must be an object {\"kind\", \"data\"}".into());
            };
            let kind = match t.remove("kind") {
                Some(Value::String(k)) if wire::api::valid_name(&k, 64) => k,
                _ => {
                    return Err("\"trace\".\"kind\" must be a string of 1-64 characters \
                                without control characters"
                        .into());
                }
            };
            Ok(EventItem::Trace(TraceItem { kind, data: t.remove("data").unwrap_or(Value::Null) }))
        }
        _ => {
            let Some(Value::Object(mut e)) = map.remove("end") else {
                return Err("\"end\" must be an object {\"status\", \"error\"?}".into());
            };
            let status = match e.get("status").and_then(Value::as_str) {
                Some("completed") => TurnStatus::Completed,
                Some("failed") => TurnStatus::Failed,
                _ => return Err("\"end\".\"status\" must be \"completed\" or \"failed\"".into()),
            };
            Ok(EventItem::End(EndItem { status, error: e.remove("error") }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Strategy;

    #[test]
    fn items_and_their_errors() {
        assert_eq!(parse_item(r#"{"delta":"a"}"#), Ok(EventItem::Delta("a".into())));
        assert!(matches!(
            parse_item(r#"{"trace":{"kind":"tool_call","data":{"x":1}}}"#),
            Ok(EventItem::Trace(_))
        ));
        assert!(parse_item("{").unwrap_err().contains("not valid JSON"));
        assert!(parse_item("[1]").unwrap_err().contains("object"));
        assert!(parse_item(r#"{"delta":1}"#).unwrap_err().contains("string"));
        assert!(
            parse_item(r#"{"delta":"a","end":{"status":"completed"}}"#)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(parse_item(r#"{"end":{"status":"cancelled"}}"#).unwrap_err().contains("completed"));
        assert!(parse_item(r#"{"trace":{"data":1}}"#).unwrap_err().contains("kind"));
        assert!(parse_item(r#"{"trace":{"kind":"a\u0000"}}"#).unwrap_err().contains("control"));
        assert_eq!(parse_item(r#"{"delta":"a\u00e9\n"}"#), Ok(EventItem::Delta("aé\n".into())));
        assert!(parse_item(r#"{"delta":"a","extra":1}"#).unwrap_err().contains("exactly one"));
        assert!(parse_item(r#"{"delta":null}"#).unwrap_err().contains("string"));
        assert!(parse_item(r#"{"end":{"status":"streaming"}}"#).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever a producer sends as a line is parsed or refused with a message, never a panic.
        #[test]
        fn any_line_is_parsed_or_refused(line in ".{0,200}") {
            if let Err(m) = parse_item(&line) {
                proptest::prop_assert!(!m.is_empty());
            }
        }

        #[test]
        fn any_delta_text_comes_through_exactly(text in proptest::prelude::any::<String>()) {
            let line = serde_json::json!({"delta": text}).to_string();
            proptest::prop_assert_eq!(parse_item(&line), Ok(EventItem::Delta(text)));
        }

        #[test]
        fn json_shaped_items_are_parsed_or_refused(
            key in "delta|trace|end|x",
            value in proptest::prelude::prop_oneof![
                proptest::prelude::Just(serde_json::json!(null)),
                ".{0,20}".prop_map(serde_json::Value::from),
                proptest::prelude::any::<i64>().prop_map(serde_json::Value::from),
                ("[a-z]{0,8}", ".{0,8}").prop_map(|(k, v)| serde_json::json!({"kind": k, "status": v, "data": v})),
            ],
        ) {
            let _ = parse_item(&serde_json::json!({key: value}).to_string());
        }
    }
}
