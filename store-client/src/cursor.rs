//! The opaque history cursor: the position `(created_at, turn_id)` of the last turn of a page.

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub turn_id: String,
}

impl Cursor {
    /// The opaque form clients send back: URL-safe hex of `<ms>:<turn_id>`.
    pub fn encode(&self) -> String {
        hex(&format!("{}:{}", self.created_at_ms, self.turn_id))
    }

    pub fn decode(s: &str) -> Result<Cursor, StoreError> {
        let bad = || StoreError::Invalid("the cursor is not one this server gave".into());
        let text = unhex(s).ok_or_else(bad)?;
        let (ms, id) = text.split_once(':').ok_or_else(bad)?;
        Ok(Cursor { created_at_ms: ms.parse().map_err(|_| bad())?, turn_id: id.to_owned() })
    }
}

/// The URL-safe hex of a cursor's text.
pub(crate) fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A cursor's text from its hex; `None` when it is not one (or longer than any we give).
pub(crate) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let c = Cursor { created_at_ms: 1_700_000_000_123, turn_id: "t:1".into() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("zz").is_err());
        assert!(Cursor::decode("abc").is_err());
        assert!(Cursor::decode(&"41".repeat(3)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// A forged cursor is refused, never a panic; every cursor this server gives comes back.
        #[test]
        fn any_string_decodes_or_is_refused(s in ".*") {
            let _ = Cursor::decode(&s);
        }

        #[test]
        fn every_cursor_round_trips(ms in proptest::prelude::any::<i64>(), id in "[A-Za-z0-9._:-]{1,128}") {
            let c = Cursor { created_at_ms: ms, turn_id: id };
            proptest::prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
    }
}
