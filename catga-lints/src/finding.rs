//! A finding: one rule broken at one place, worded for that place.

use std::borrow::Cow;

use proc_macro2::Span;

use crate::catalog::{Level, Rule};

/// One rule broken at one span.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The rule.
    pub rule: &'static Rule,
    /// Where: the smallest span that is wrong.
    pub span: Span,
    /// The message, specific to this place (e.g. naming the handler).
    pub message: String,
    /// What to write instead; the rule's `help` unless this place needs something more precise.
    pub help: Cow<'static, str>,
}

impl Finding {
    /// A finding with the rule's own help line.
    pub fn new(rule: &'static Rule, span: Span, message: impl Into<String>) -> Self {
        Finding {
            rule,
            span,
            message: message.into(),
            help: Cow::Borrowed(rule.help),
        }
    }

    /// Replaces the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<Cow<'static, str>>) -> Self {
        self.help = help.into();
        self
    }

    /// The rule's default level.
    pub fn level(&self) -> Level {
        self.rule.level
    }

    /// The text of a `compile_error!` or `deprecated` note: the message, then `help:` and a
    /// note naming the rule, each on its own line as rustc lays out its own diagnostics.
    pub fn text(&self) -> String {
        let rule = self.rule;
        let mut text = format!("{}\n  help: {}", self.message, self.help);
        if rule.level == Level::Error {
            text.push_str(&format!(
                "\n  note: {} ({}), see {}",
                rule.id,
                rule.name,
                rule.explain()
            ));
        } else {
            text.push_str(&format!(
                "\n  note: {} ({}); silence with {}; see {}",
                rule.id,
                rule.name,
                rule.silence(),
                rule.explain()
            ));
        }
        text
    }
}
