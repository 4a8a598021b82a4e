//! The diagnostic catalogue: every rule catga checks, with a stable id, a default level, the
//! message, the fix, the reason and an example. Each rule is implemented once (in
//! [`rules`](crate::rules)) and reported through one or more [`Surface`]s; `docs/lints.md` is
//! generated from this catalogue and a test keeps the two identical.

mod blocking;
mod concurrency;
mod cqrs;
mod message;
mod panics;
mod reliability;
mod shape;

use std::fmt;

pub use blocking::*;
pub use concurrency::*;
pub use cqrs::*;
pub use message::*;
pub use panics::*;
pub use reliability::*;
pub use shape::*;

/// How serious a rule's finding is by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Informational; never fails a run.
    Note,
    /// Probably wrong; fails `cargo catga lint --deny warnings`.
    Warning,
    /// Wrong; fails compilation or the lint run.
    Error,
}

impl Level {
    /// `error`, `warning` or `note`, as rustc and cargo print it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// While `#[handler]`, `#[command]`, … expand: an error is a `compile_error!` at the
    /// offending span; a warning is a `deprecated` warning naming the rule.
    Expansion,
    /// As a trait-bound error from rustc, worded by `#[diagnostic::on_unimplemented]`: for
    /// checks that need types the macro cannot see (is the event `Clone`? is it a query?).
    Compiler,
    /// By `cargo catga lint`, which sees every source file of the crates it lints at once.
    Cli,
}

impl Surface {
    /// How the surface is named in the docs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Surface::Expansion => "macro expansion",
            Surface::Compiler => "compiler (trait bound)",
            Surface::Cli => "`cargo catga lint`",
        }
    }
}

/// The family a rule belongs to, for the docs' sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// How a handler is written.
    HandlerShape,
    /// How a message is declared.
    Message,
    /// Blocking calls inside async handlers.
    Blocking,
    /// Code that can panic inside handlers.
    Panics,
    /// Shared state and locks.
    Concurrency,
    /// Command/query/event discipline and whole-program wiring.
    Cqrs,
    /// Delivery across processes.
    Reliability,
}

impl Family {
    /// The docs' section title.
    pub const fn title(self) -> &'static str {
        match self {
            Family::HandlerShape => "Handler shape",
            Family::Message => "Message declarations",
            Family::Blocking => "Blocking in async handlers",
            Family::Panics => "Panics in handlers",
            Family::Concurrency => "Concurrency",
            Family::Cqrs => "CQRS discipline",
            Family::Reliability => "Reliability",
        }
    }
}

/// Where a finding of a rule can be silenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Nowhere: the code is wrong (an error).
    Never,
    /// On the handler: `#[handler(allow(name))]`.
    Handler,
    /// On the message: `#[command(allow(name))]` (or `#[query]`, `#[event]`).
    Message,
    /// Only for a whole run: `cargo catga lint --allow name`.
    CommandLine,
}

/// One rule of the catalogue.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, `CATGA001` …; never reused.
    pub id: &'static str,
    /// Stable snake_case name, used to silence it: `#[handler(allow(unwrap_in_handler))]`.
    pub name: &'static str,
    /// Default level.
    pub level: Level,
    /// Docs section.
    pub family: Family,
    /// The one-line message (a finding may say it more specifically).
    pub summary: &'static str,
    /// What to write instead.
    pub help: &'static str,
    /// Why the rule exists.
    pub rationale: &'static str,
    /// Where it fires.
    pub surfaces: &'static [Surface],
    /// Where it can be silenced (every rule but an error can also be silenced for a whole
    /// `cargo catga lint` run with `--allow name`).
    pub allow: Allow,
    /// Code that triggers it.
    pub bad: &'static str,
    /// The same code, fixed.
    pub good: &'static str,
}

impl Rule {
    /// The anchor of its section in `docs/lints.md`: the id in lower case.
    pub fn anchor(&self) -> String {
        self.id.to_ascii_lowercase()
    }

    /// Where the rule is explained, relative to the repository root.
    pub fn docs(&self) -> String {
        format!("docs/lints.md#{}", self.anchor())
    }

    /// How a user reads the rule's explanation wherever they are (a path into this
    /// repository means nothing in their crate): `` `cargo catga explain CATGA030` ``.
    pub fn explain(&self) -> String {
        format!("`cargo catga explain {}`", self.id)
    }

    /// How to silence it, for the docs and diagnostics.
    pub fn silence(&self) -> String {
        let name = self.name;
        match self.allow {
            Allow::Never => "cannot be silenced: the code does not work as written".to_string(),
            Allow::Handler => format!("`#[handler(allow({name}))]` on the handler"),
            Allow::Message => {
                format!(
                    "`allow({name})` in the message's attribute, e.g. `#[command(allow({name}))]`"
                )
            }
            Allow::CommandLine => format!("`cargo catga lint --allow {name}`"),
        }
    }

    /// Whether the rule fires on `surface`.
    pub fn fires_on(&self, surface: Surface) -> bool {
        self.surfaces.contains(&surface)
    }
}

/// Every rule, in id order.
pub static RULES: &[&Rule] = &[
    &HANDLER_NOT_ASYNC,
    &HANDLER_WITHOUT_MESSAGE,
    &HANDLER_TWO_MESSAGES,
    &HANDLER_RETURN_NOT_RESULT,
    &EVENT_BY_VALUE_NOT_CLONE,
    &HANDLER_GENERIC,
    &HANDLER_MUTABLE_PARAMETER,
    &HANDLER_MISPLACED,
    &HANDLER_IMPL_HELPER,
    &HANDLER_OUTPUT_MISMATCH,
    &MESSAGE_SHAPE,
    &UNKNOWN_ARGUMENT,
    &INVALID_WIRE_NAME,
    &MESSAGE_OUTPUT_KIND,
    &INVALID_POLICY,
    &WIRE_MESSAGE_NOT_SERDE,
    &WRONG_VERB,
    &CONTEXT_BY_VALUE,
    &REQUEST_BY_REFERENCE,
    &BLOCKING_SLEEP,
    &BLOCKING_FS,
    &BLOCKING_NET,
    &BLOCKING_HTTP,
    &BLOCK_ON,
    &SYNC_LOCK_ACROSS_AWAIT,
    &UNWRAP_IN_HANDLER,
    &EXPECT_IN_HANDLER,
    &PANIC_IN_HANDLER,
    &INDEXING_IN_HANDLER,
    &MUTABLE_STATIC,
    &UNSYNC_STATE,
    &NESTED_LOCKS,
    &QUERY_SIDE_EFFECTS,
    &EVENT_NAME_TENSE,
    &REQUEST_WITHOUT_HANDLER,
    &EVENT_WITHOUT_HANDLER,
    &DUPLICATE_HANDLER,
    &DUPLICATE_WIRE_NAME,
    &UNLINKED_HANDLERS,
    &EXTERNAL_CALL_IN_COMMAND,
    &COMMAND_WITHOUT_IDEMPOTENCY,
    &MESSAGE_TOO_LARGE,
];

/// The rule with this id (`CATGA030`) or name (`unwrap_in_handler`).
pub fn find(key: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .copied()
        .find(|r| r.id.eq_ignore_ascii_case(key) || r.name == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_and_names_are_unique_and_well_formed() {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for rule in RULES {
            assert!(ids.insert(rule.id), "duplicate id {}", rule.id);
            assert!(names.insert(rule.name), "duplicate name {}", rule.name);
            assert!(
                rule.id.len() == 8
                    && rule.id.starts_with("CATGA")
                    && rule.id[5..].bytes().all(|b| b.is_ascii_digit()),
                "{}",
                rule.id
            );
            assert!(
                rule.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
            assert!(!rule.surfaces.is_empty(), "{} fires nowhere", rule.id);
            for text in [rule.summary, rule.help] {
                assert!(
                    text.starts_with(|c: char| !c.is_ascii_uppercase()) && !text.ends_with('.'),
                    "{}: rustc style (lower-case start, no final period): {text}",
                    rule.id
                );
            }
            assert!(!rule.bad.is_empty() && !rule.good.is_empty(), "{}", rule.id);
            assert_eq!(
                rule.level == Level::Error,
                rule.allow == Allow::Never,
                "{}: errors, and only errors, cannot be silenced",
                rule.id
            );
        }
        let mut sorted: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        sorted.sort();
        assert_eq!(sorted, RULES.iter().map(|r| r.id).collect::<Vec<_>>());
    }

    #[test]
    fn rules_are_found_by_id_or_name() {
        assert_eq!(find("CATGA001").map(|r| r.name), Some("handler_not_async"));
        assert_eq!(find("catga001").map(|r| r.name), Some("handler_not_async"));
        assert_eq!(find("unwrap_in_handler").map(|r| r.id), Some("CATGA030"));
        assert!(find("nope").is_none());
    }
}
