//! `docs/lints.md`, rendered from the catalogue so the page and the rules cannot drift apart
//! (a test in `catga-lints/tests/docs.rs` compares them).

use std::fmt::Write as _;

use crate::catalog::{Family, Level, RULES, Rule, Surface};

const INTRO: &str = "\
# Lints

catga checks handlers and messages at three points, all from one catalogue of rules (each
with a stable id that is never reused):

* **while the macros expand** (`#[handler]`, `#[command]`, …): errors are compile errors at the
  offending span; warnings are `deprecated` warnings that name the rule, e.g.
  `use of deprecated unit struct CATGA030_unwrap_in_handler: `unwrap` in a handler can panic`;
* **by the compiler**, for checks that need types the macro cannot see (is the event `Clone`?
  is this message a query?), through `#[diagnostic::on_unimplemented]` messages that name the
  rule;
* **by `cargo catga lint`**, which reads every source file of a workspace at once and runs
  every rule, including those that need the whole program (a command with no handler,
  duplicate wire names, an event nobody handles).

```sh
cargo install --path catga-lints            # provides `cargo catga`
cargo catga lint                            # the workspace in the current directory
cargo catga lint examples src/orders.rs     # some directories or files
cargo catga lint --deny warnings            # CI: warnings fail the run
cargo catga lint --message-format json      # one cargo-style JSON diagnostic per line
cargo catga lint --allow event_name_tense   # silence a rule for this run
cargo catga explain CATGA025                # this page's entry for one rule
```

`cargo catga lint` exits with 1 when it reports an error (or, with `--deny warnings`, a
warning), 2 when it cannot run (bad arguments, unreadable files), and 0 otherwise. In this
workspace `.ci/run` runs it over `examples/` with `--deny warnings`.

A warning can be silenced where it is reported, for one item: `#[handler(allow(unwrap_in_handler))]`
on a handler, `#[event(allow(event_name_tense))]` on a message. Errors cannot be silenced: the
code does not work as written. The checks are syntactic where they look at bodies (blocking
calls, panics, locks): each entry says what it recognises, and each has a test of a near miss
that must not fire.
";

/// The whole page.
pub fn render() -> String {
    let mut page = String::from(INTRO);
    page.push_str("\n## Index\n\n| id | name | level | surfaces |\n|---|---|---|---|\n");
    for rule in RULES {
        let surfaces: Vec<&str> = rule.surfaces.iter().map(|s| short(*s)).collect();
        let _ = writeln!(
            page,
            "| [{}](#{}) | `{}` | {} | {} |",
            rule.id,
            rule.anchor(),
            rule.name,
            rule.level,
            surfaces.join(", ")
        );
    }
    let mut families: Vec<Family> = RULES.iter().map(|r| r.family).collect();
    families.sort();
    families.dedup();
    for family in families {
        let _ = write!(page, "\n## {}\n", family.title());
        for rule in RULES.iter().filter(|r| r.family == family) {
            entry(&mut page, rule);
        }
    }
    page
}

/// One rule's entry, as `cargo catga explain` prints it too.
pub fn entry(page: &mut String, rule: &Rule) {
    let surfaces: Vec<&str> = rule.surfaces.iter().map(|s| s.as_str()).collect();
    let level = match rule.level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note => "note",
    };
    let _ = write!(
        page,
        "\n### {id}\n\n`{name}` · {level} · reported by {surfaces}\n\n**{summary}.** {rationale}\n\n\
         Instead: {help}.\n\nSilence: {silence}.\n\n\
         ```rust,ignore\n// fires\n{bad}\n```\n\n```rust,ignore\n// does not fire\n{good}\n```\n",
        id = rule.id,
        name = rule.name,
        surfaces = surfaces.join(", "),
        summary = capitalise(rule.summary),
        rationale = rule
            .rationale
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
        help = rule.help,
        silence = rule.silence(),
        bad = rule.bad,
        good = rule.good,
    );
}

fn short(surface: Surface) -> &'static str {
    match surface {
        Surface::Expansion => "macro",
        Surface::Compiler => "compiler",
        Surface::Cli => "cli",
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
