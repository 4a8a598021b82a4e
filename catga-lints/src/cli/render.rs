//! rustc-style text: the level and rule id, the location, the source line with a caret under
//! the span, then `help` and a note saying how to silence it.

use std::fmt::Write as _;

use crate::catalog::Level;
use crate::finding::Finding;
use crate::program::Source;

/// Where a finding is, 1-based lines, 0-based character columns, clipped to its first line.
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub end_column: usize,
}

/// The position of a finding in its source.
pub fn position(source: &Source, finding: &Finding) -> Position {
    let start = finding.span.start();
    let end = finding.span.end();
    let line = start.line.max(1);
    let line_chars = source
        .text
        .lines()
        .nth(line - 1)
        .map_or(0, |l| l.chars().count());
    let end_column = if end.line == start.line {
        end.column.max(start.column + 1)
    } else {
        line_chars.max(start.column + 1)
    };
    Position {
        line,
        column: start.column,
        end_column,
    }
}

/// One diagnostic, ending with a blank line.
pub fn human(source: &Source, finding: &Finding) -> String {
    let rule = finding.rule;
    let at = position(source, finding);
    let code = source.text.lines().nth(at.line - 1).unwrap_or("");
    let gutter = " ".repeat(at.line.to_string().len());
    let mut text = String::new();
    let _ = writeln!(text, "{}[{}]: {}", rule.level, rule.id, finding.message);
    let _ = writeln!(
        text,
        "{gutter}--> {}:{}:{}",
        source.path,
        at.line,
        at.column + 1
    );
    let _ = writeln!(text, "{gutter} |");
    let _ = writeln!(text, "{} | {code}", at.line);
    let indent: String = code
        .chars()
        .take(at.column)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let _ = writeln!(
        text,
        "{gutter} | {indent}{}",
        "^".repeat(at.end_column - at.column)
    );
    let _ = writeln!(text, "{gutter} |");
    let _ = writeln!(text, "{gutter} = help: {}", finding.help);
    let how = if rule.level == Level::Error {
        String::new()
    } else {
        format!("; silence with {}", rule.silence())
    };
    let _ = writeln!(
        text,
        "{gutter} = note: `{}` ({}){how}; see {}",
        rule.name,
        rule.id,
        rule.explain()
    );
    text.push('\n');
    text
}

/// `2 errors, 1 warning, 0 notes`.
pub fn tally(errors: usize, warnings: usize, notes: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}, {}",
        plural(errors, "error"),
        plural(warnings, "warning"),
        plural(notes, "note")
    )
}
