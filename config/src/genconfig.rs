//! `gateway genconfig`: a commented TOML of every setting with its default, from the one table
//! of settings (so it cannot drift from what is read).

use crate::SETTINGS;

/// The TOML text: each setting's meaning, then the setting commented out at its default (a
/// default that is not a value, such as "none" or "random", is shown in a comment instead).
pub fn genconfig() -> String {
    let mut out = String::from(
        "# Gateway settings. Uncomment what you change; each key is also the environment\n\
         # variable GATEWAY_<KEY IN UPPER CASE>, which wins over this file.\n",
    );
    for (key, default, meaning) in SETTINGS {
        out.push_str(&format!("\n# {meaning}\n"));
        match value(default) {
            Some(v) => out.push_str(&format!("# {key} = {v}\n")),
            None => out.push_str(&format!("# {key} =   (default: {default})\n")),
        }
    }
    out
}

/// A default as a TOML value, when it is one.
fn value(default: &str) -> Option<String> {
    if default.parse::<i64>().is_ok() || default == "true" || default == "false" {
        return Some(default.to_owned());
    }
    let descriptive = default.contains(' ')
        || default.contains(':') && !default.contains("://") && !default.contains('.')
        || ["none", "random", "unset"].contains(&default);
    (!descriptive).then(|| format!("{default:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_listed_and_the_values_parse_as_toml() {
        let text = genconfig();
        for (key, _, _) in SETTINGS {
            assert!(text.contains(&format!("# {key} =")), "{key}");
        }
        // Uncommented, the lines with values are a TOML document.
        let values: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = ") && !l.contains("(default:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed: toml::Table = toml::from_str(&values).expect("valid TOML");
        assert_eq!(parsed["listen"].as_str(), Some("127.0.0.1:8080"));
        assert_eq!(parsed["heartbeat_ms"].as_integer(), Some(15000));
    }
}
