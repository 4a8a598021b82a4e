//! `--message-format json`: one object per line, shaped like cargo's `compiler-message` (and
//! rustc's diagnostic inside it), so editors and CI tools that read `cargo check
//! --message-format json` read these too. The run ends with a `build-finished` object.

use serde_json::{Value, json};

use crate::catalog::Level;
use crate::cli::render::{self, position};
use crate::finding::Finding;
use crate::program::Source;

/// Byte offset of a 0-based character column on a 1-based line.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let in_line: usize = text[line_start..]
        .chars()
        .take_while(|c| *c != '\n')
        .take(column)
        .map(char::len_utf8)
        .sum();
    line_start + in_line
}

/// One finding as a `compiler-message`.
pub fn diagnostic(source: &Source, finding: &Finding) -> Value {
    let rule = finding.rule;
    let at = position(source, finding);
    let code_line = source.text.lines().nth(at.line - 1).unwrap_or("");
    let silence = if rule.level == Level::Error {
        format!("see {}", rule.explain())
    } else {
        format!("silence with {}; see {}", rule.silence(), rule.explain())
    };
    let child = |level: &str, message: String| json!({ "message": message, "code": null, "level": level, "spans": [], "children": [], "rendered": null });
    json!({
        "reason": "compiler-message",
        "package_id": null,
        "manifest_path": null,
        "target": null,
        "message": {
            "$message_type": "diagnostic",
            "message": finding.message,
            "code": { "code": rule.id, "explanation": null },
            "level": rule.level.as_str(),
            "spans": [{
                "file_name": source.path,
                "byte_start": byte_offset(&source.text, at.line, at.column),
                "byte_end": byte_offset(&source.text, at.line, at.end_column),
                "line_start": at.line,
                "line_end": at.line,
                "column_start": at.column + 1,
                "column_end": at.end_column + 1,
                "is_primary": true,
                "text": [{
                    "text": code_line,
                    "highlight_start": at.column + 1,
                    "highlight_end": at.end_column + 1,
                }],
                "label": null,
                "suggested_replacement": null,
                "suggestion_applicability": null,
                "expansion": null,
            }],
            "children": [
                child("help", finding.help.to_string()),
                child("note", format!("`{}` ({}); {silence}", rule.name, rule.id)),
            ],
            "rendered": render::human(source, finding),
        }
    })
}

/// A file that could not be parsed.
pub fn plain_error(message: &str) -> Value {
    json!({
        "reason": "compiler-message",
        "package_id": null,
        "manifest_path": null,
        "target": null,
        "message": {
            "$message_type": "diagnostic",
            "message": message.trim_start_matches("error: "),
            "code": null,
            "level": "error",
            "spans": [],
            "children": [],
            "rendered": format!("{message}\n"),
        }
    })
}

/// The last line: whether the run passed.
pub fn finished(success: bool) -> Value {
    json!({ "reason": "build-finished", "success": success })
}

#[cfg(test)]
mod tests {
    use super::byte_offset;

    #[test]
    fn offsets_count_bytes_of_characters() {
        let text = "ab\né x\n";
        assert_eq!(byte_offset(text, 1, 0), 0);
        assert_eq!(byte_offset(text, 2, 0), 3);
        assert_eq!(byte_offset(text, 2, 2), 6, "`é` is two bytes");
    }
}
