//! The README's configuration reference lists every setting, with its default.

#[test]
fn the_readme_documents_every_setting() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for (key, default, _) in config::SETTINGS {
        let row = format!("| `GATEWAY_{}` (`{key}`) |", key.to_ascii_uppercase());
        let line = readme
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("README lacks {row}"));
        assert!(
            line.ends_with(&format!("| {default} |")),
            "README default of {key} is not {default}: {line}"
        );
    }
}
