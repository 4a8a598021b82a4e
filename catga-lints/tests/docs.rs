//! `docs/lints.md` is rendered from the catalogue; this keeps the checked-in page identical.
//! `CATGA_BLESS=1 cargo test -p catga-lints --test docs` rewrites it.

use std::path::Path;

#[test]
fn lints_md_is_rendered_from_the_catalogue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/lints.md");
    let rendered = catga_lints::docs::render();
    if std::env::var_os("CATGA_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let page = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        page == rendered,
        "docs/lints.md is out of date with the catalogue: run `CATGA_BLESS=1 cargo test -p catga-lints --test docs`"
    );
}

#[test]
fn every_rule_has_a_section_and_an_index_row() {
    let page = catga_lints::docs::render();
    for rule in catga_lints::RULES {
        assert!(
            page.contains(&format!("\n### {}\n", rule.id)),
            "{}",
            rule.id
        );
        assert!(
            page.contains(&format!("| [{}](#{}) |", rule.id, rule.anchor())),
            "{}",
            rule.id
        );
    }
}
