//! A user's notification preferences (PROTOCOL.md v1.1, §Notifications): the full document as
//! `GET` returns it. Validation, with errors that name the field, is the gateway's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Priority;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub default: CategoryPrefs,
    pub categories: BTreeMap<String, CategoryOverride>,
    pub quiet_hours: Option<QuietHours>,
    /// RFC 3339, or null.
    pub mute_until: Option<String>,
    /// Null: the gateway's `GATEWAY_NOTIFY_BUDGET_PER_HOUR`.
    pub budget_per_hour: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CategoryPrefs {
    pub enabled: bool,
    pub min_priority: Priority,
    pub push: bool,
}

/// A category entry: what it leaves out is taken from `default`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct CategoryOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_priority: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// An IANA time zone.
    pub tz: String,
    /// Local `HH:MM`, inclusive.
    pub from: String,
    /// Local `HH:MM`, exclusive; before `from`: the window spans midnight.
    pub until: String,
    /// The days a window starts on (`mon` … `sun`).
    pub days: Vec<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            default: CategoryPrefs { enabled: true, min_priority: Priority::Low, push: true },
            categories: BTreeMap::new(),
            quiet_hours: None,
            mute_until: None,
            budget_per_hour: None,
        }
    }
}

impl Preferences {
    /// A category's settings, what its entry leaves out taken from `default`.
    pub fn category(&self, name: &str) -> CategoryPrefs {
        let o = self.categories.get(name).cloned().unwrap_or_default();
        CategoryPrefs {
            enabled: o.enabled.unwrap_or(self.default.enabled),
            min_priority: o.min_priority.unwrap_or(self.default.min_priority),
            push: o.push.unwrap_or(self.default.push),
        }
    }
}

impl Priority {
    /// `low` < `normal` < `high` < `critical`.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Critical => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_document_is_the_protocols() {
        let v = serde_json::to_value(Preferences::default()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"default":{"enabled":true,"min_priority":"low","push":true},
                "categories":{},"quiet_hours":null,"mute_until":null,"budget_per_hour":null})
        );
    }
}
