//! `cargo catga`: the command line. `lint` runs every rule over a workspace's sources and
//! prints rustc-style (or cargo-JSON) diagnostics; `explain` prints one rule's docs; `rules`
//! lists the catalogue.
//!
//! Arguments are parsed by hand: there are five flags, and the crate stays free of
//! dependencies for `catga-macros`, which depends on it.

mod config;
mod discover;
mod glob;
mod json;
mod render;

use std::io::Write;
use std::path::PathBuf;

use crate::catalog::{self, Level, RULES};
use crate::program::{Located, Program, Source};

const USAGE: &str = "\
usage: cargo catga lint [--deny warnings] [--allow RULE]... [--message-format human|json] [PATH]...
       cargo catga explain RULE
       cargo catga rules

lint     check handlers and messages (the workspace in the current directory, less what
         [workspace.metadata.catga.lint] excludes, or the given files and directories as
         given); exits 1 on errors (and on warnings with --deny warnings)
explain  print the documentation of one rule (an id like CATGA025 or a name)
rules    list every rule";

/// Output format of `lint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// rustc-style text on stderr.
    Human,
    /// One cargo-style `compiler-message` JSON object per line on stdout.
    Json,
}

/// Parsed `lint` options.
#[derive(Debug)]
pub struct LintOptions {
    /// Files and directories; empty means the workspace of the current directory.
    pub paths: Vec<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Whether warnings fail the run.
    pub deny_warnings: bool,
    /// Rules silenced for the whole run.
    pub allow: Vec<&'static catalog::Rule>,
}

/// Runs the command line and returns the process exit code. `args` excludes the program
/// name; a leading `catga` (as `cargo catga …` passes it) is skipped.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let args: &[String] = match args.first().map(String::as_str) {
        Some("catga") => &args[1..],
        _ => args,
    };
    let result = match args.first().map(String::as_str) {
        Some("lint") => parse_lint(&args[1..]).map(|opts| lint(&opts, out, err)),
        Some("explain") => match args.get(1).and_then(|key| catalog::find(key)) {
            Some(rule) => {
                let mut text = String::new();
                crate::docs::entry(&mut text, rule);
                let _ = write!(out, "{}", text.trim_start());
                Ok(0)
            }
            None => Err(format!(
                "`explain` takes a rule id or name, e.g. `cargo catga explain CATGA025`; got {:?}",
                args.get(1)
            )),
        },
        Some("rules") => {
            for rule in RULES {
                let _ = writeln!(
                    out,
                    "{}  {:<8} {:<28} {}",
                    rule.id, rule.level, rule.name, rule.summary
                );
            }
            Ok(0)
        }
        Some("-h" | "--help" | "help") => {
            let _ = writeln!(out, "{USAGE}");
            Ok(0)
        }
        _ => Err("expected a command: `lint`, `explain` or `rules`".to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(err, "error: {message}\n\n{USAGE}");
            2
        }
    }
}

fn parse_lint(args: &[String]) -> Result<LintOptions, String> {
    let mut opts = LintOptions {
        paths: Vec::new(),
        format: Format::Human,
        deny_warnings: false,
        allow: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match arg.as_str() {
            "--message-format" => {
                opts.format = match value(arg)?.as_str() {
                    "human" | "short" => Format::Human,
                    "json" => Format::Json,
                    other => return Err(format!("unknown message format `{other}` (human, json)")),
                }
            }
            "--deny" | "-D" => match value(arg)?.as_str() {
                "warnings" => opts.deny_warnings = true,
                other => return Err(format!("`--deny` takes `warnings`, not `{other}`")),
            },
            "--allow" | "-A" => {
                let key = value(arg)?;
                let rule = catalog::find(&key).ok_or_else(|| format!("unknown rule `{key}`"))?;
                if rule.level == Level::Error {
                    return Err(format!(
                        "{} ({}) is an error and cannot be silenced",
                        rule.id, rule.name
                    ));
                }
                opts.allow.push(rule);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            path => opts.paths.push(PathBuf::from(path)),
        }
    }
    Ok(opts)
}

/// Lints, prints, and returns the exit code.
pub fn lint(opts: &LintOptions, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut discovered = match discover::files(&opts.paths) {
        Ok(found) => found,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return 2;
        }
    };
    let files = &discovered.files;
    let mut sources = Vec::new();
    // For each file, its index among the sources, or `None` if it did not parse.
    let mut parsed_as: Vec<Option<usize>> = Vec::new();
    let mut parse_errors = Vec::new();
    for (file, module) in files.iter().zip(&discovered.modules) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                let _ = writeln!(err, "error: cannot read {}: {e}", discover::display(file));
                return 2;
            }
        };
        match syn::parse_file(&text) {
            Ok(ast) => {
                parsed_as.push(Some(sources.len()));
                sources.push(Source {
                    path: discover::display(file),
                    text,
                    ast,
                    module: module.clone(),
                });
            }
            Err(e) => {
                parsed_as.push(None);
                let at = e.span().start();
                parse_errors.push(format!(
                    "error: could not parse {}:{}:{}: {e}",
                    discover::display(file),
                    at.line,
                    at.column + 1
                ));
            }
        }
    }
    let lines: usize = sources.iter().map(|s| s.text.lines().count()).sum();
    let units = discovered
        .units
        .iter()
        .map(|unit| unit.iter().filter_map(|&f| parsed_as[f]).collect())
        .collect();
    // The file each source was read from, for the configuration's per-path `allow`.
    let source_files: Vec<&PathBuf> = files
        .iter()
        .zip(&parsed_as)
        .filter_map(|(file, parsed)| parsed.map(|_| file))
        .collect();
    let crates = std::mem::take(&mut discovered.crates).map(|&f| parsed_as[f]);
    let (sources, findings) = Program::new(sources, units).with_crates(crates).check();
    let findings: Vec<Located> = findings
        .into_iter()
        .filter(|l| !opts.allow.iter().any(|r| r.id == l.finding.rule.id))
        .filter(|l| {
            !discovered
                .config
                .allows(l.finding.rule, source_files[l.source])
        })
        .collect();
    let count = |level| {
        findings
            .iter()
            .filter(|l| l.finding.level() == level)
            .count()
    };
    let (errors, warnings, notes) = (
        count(Level::Error) + parse_errors.len(),
        count(Level::Warning),
        count(Level::Note),
    );
    let failed = errors > 0 || (opts.deny_warnings && warnings > 0);
    match opts.format {
        Format::Human => {
            for message in &parse_errors {
                let _ = writeln!(err, "{message}\n");
            }
            for located in &findings {
                let _ = write!(
                    err,
                    "{}",
                    render::human(&sources[located.source], &located.finding)
                );
            }
            let excluded = match discovered.excluded {
                0 => String::new(),
                n => format!("; {n} excluded by {}", config::TABLE),
            };
            let _ = writeln!(
                err,
                "catga lint: {} in {} file{} ({} lines){excluded}",
                render::tally(errors, warnings, notes),
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                lines
            );
        }
        Format::Json => {
            for message in &parse_errors {
                let _ = writeln!(out, "{}", json::plain_error(message));
            }
            for located in &findings {
                let _ = writeln!(
                    out,
                    "{}",
                    json::diagnostic(&sources[located.source], &located.finding)
                );
            }
            let _ = writeln!(out, "{}", json::finished(!failed));
        }
    }
    i32::from(failed)
}
