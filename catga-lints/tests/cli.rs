//! `cargo catga lint` against fixture sources under `tests/fixtures/`.
//!
//! Each fixture line says what it expects in a comment: `fires: CATGA030` (that diagnostic on
//! that line; a rule listed twice fires twice) and `near miss: CATGA030` (code that resembles
//! the rule's target but must not fire). The run must report exactly the `fires` set, and its
//! full output must match the checked-in snapshot (`expected.txt`, and `expected.jsonl` where
//! present). `CATGA_BLESS=1` rewrites the snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use catga_lints::RULES;

const FIXTURES: &[&str] = &["shape", "messages", "bodies", "program", "workspace"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Runs `cargo catga lint` in the fixture's directory with its `args` file and `extra`: on
/// `src`, or on the whole workspace when the fixture is one (it has a `Cargo.toml`).
fn lint(name: &str, extra: &[&str]) -> Output {
    let dir = fixture(name);
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let paths: &[&str] = if dir.join("Cargo.toml").is_file() {
        &[]
    } else {
        &["src"]
    };
    Command::new(env!("CARGO_BIN_EXE_cargo-catga"))
        .current_dir(&dir)
        .args(["catga", "lint"])
        .args(args.split_whitespace())
        .args(extra)
        .args(paths)
        .output()
        .expect("run cargo-catga")
}

/// (file, line, rule) → how many times.
type Tally = BTreeMap<(String, usize, String), usize>;

/// What the fixture's comments say: the `fires` and the `near miss` annotations.
fn annotations(name: &str) -> (Tally, Tally) {
    let (mut fires, mut misses) = (Tally::new(), Tally::new());
    let src = fixture(name).join("src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let shown = format!("src/{}", file.file_name().unwrap().to_string_lossy());
        for (i, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
            let Some((_, comment)) = line.split_once("// ") else {
                continue;
            };
            for part in comment.split(';') {
                let (target, list) = if let Some(list) = part.trim().strip_prefix("fires:") {
                    (&mut fires, list)
                } else if let Some(list) = part.trim().strip_prefix("near miss:") {
                    (&mut misses, list)
                } else {
                    continue;
                };
                let list = list.split('(').next().unwrap_or_default();
                for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    *target
                        .entry((shown.clone(), i + 1, id.to_string()))
                        .or_default() += 1;
                }
            }
        }
    }
    (fires, misses)
}

/// What the run reported, from its JSON output.
fn reported(name: &str) -> Tally {
    let output = lint(name, &["--message-format", "json"]);
    let mut tally = Tally::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        if value["reason"] != "compiler-message" {
            continue;
        }
        let message = &value["message"];
        let span = &message["spans"][0];
        let key = (
            span["file_name"].as_str().unwrap().to_string(),
            usize::try_from(span["line_start"].as_u64().unwrap()).unwrap(),
            message["code"]["code"].as_str().unwrap().to_string(),
        );
        *tally.entry(key).or_default() += 1;
    }
    tally
}

#[test]
fn every_fixture_reports_exactly_what_its_lines_say() {
    for name in FIXTURES {
        let (fires, misses) = annotations(name);
        let reported = reported(name);
        assert_eq!(
            reported, fires,
            "fixture `{name}`: reported (left) vs annotated `fires` (right)"
        );
        for key in misses.keys() {
            assert!(
                !reported.contains_key(key),
                "fixture `{name}`: near miss {key:?} fired"
            );
        }
    }
}

#[test]
fn every_rule_has_a_firing_case_and_a_near_miss() {
    let (mut fires, mut misses) = (
        BTreeMap::<String, usize>::new(),
        BTreeMap::<String, usize>::new(),
    );
    for name in FIXTURES {
        let (f, m) = annotations(name);
        for ((_, _, id), n) in f {
            *fires.entry(id).or_default() += n;
        }
        for ((_, _, id), n) in m {
            *misses.entry(id).or_default() += n;
        }
    }
    let mut missing = Vec::new();
    for rule in RULES {
        let (f, m) = (
            fires.get(rule.id).copied().unwrap_or(0),
            misses.get(rule.id).copied().unwrap_or(0),
        );
        if f == 0 || m == 0 {
            missing.push(format!(
                "{} ({}): {f} firing, {m} near misses",
                rule.id, rule.name
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "rules without both cases:\n{}",
        missing.join("\n")
    );
}

fn snapshot(name: &str, file: &str, actual: &str) {
    let path = fixture(name).join(file);
    if std::env::var_os("CATGA_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with CATGA_BLESS=1", path.display()));
    assert_eq!(
        actual, expected,
        "output of fixture `{name}` differs from {file} (CATGA_BLESS=1 rewrites it)"
    );
}

#[test]
fn human_output_matches_the_snapshots_and_exit_codes_follow_levels() {
    for name in FIXTURES {
        let output = lint(name, &[]);
        let stderr = String::from_utf8(output.stderr).unwrap();
        snapshot(name, "expected.txt", &stderr);
        let has_errors = !stderr.contains("catga lint: 0 errors");
        assert_eq!(output.status.code(), Some(i32::from(has_errors)), "{name}");
    }
    // Warnings only: passes, unless warnings are denied.
    let warnings_only = lint("bodies", &[]);
    assert_eq!(warnings_only.status.code(), Some(0));
    assert_eq!(
        lint("bodies", &["--deny", "warnings"]).status.code(),
        Some(1)
    );
}

#[test]
fn json_output_matches_the_snapshot() {
    let output = lint("bodies", &["--message-format", "json"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    snapshot("bodies", "expected.jsonl", &stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["reason"], "build-finished");
    assert_eq!(last["success"], true);
}

#[test]
fn allow_silences_a_rule_for_the_run() {
    let all = reported("bodies");
    assert!(all.keys().any(|(_, _, id)| id == "CATGA030"));
    let output = lint(
        "bodies",
        &["--allow", "unwrap_in_handler", "--message-format", "json"],
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("CATGA030"));
    assert!(stdout.contains("CATGA031"), "other rules still fire");
}

fn catga(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cargo-catga"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .args(args)
        .output()
        .expect("run cargo-catga")
}

/// Each example is its own program (with its package's library), linted as `.ci/run` does:
/// linted together, a transport used by one would make another's commands look remote. The
/// examples live in two packages, `examples/` and `examples/transports/`.
#[test]
fn the_workspace_examples_lint_clean() {
    let mut examples: Vec<(String, String)> = Vec::new();
    for package in ["examples", "examples/transports"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(package);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".rs") && name != "lib.rs" {
                examples.push((format!("{package}/lib.rs"), format!("{package}/{name}")));
            }
        }
    }
    examples.sort();
    assert!(examples.len() >= 2, "{examples:?}");
    for (library, example) in &examples {
        let output = catga(&["catga", "lint", "--deny", "warnings", library, example]);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(0), "{example}: {stderr}");
        assert!(
            stderr.contains("catga lint: 0 errors, 0 warnings"),
            "{example}: {stderr}"
        );
    }
}

#[test]
fn bad_invocations_exit_with_2_and_say_why() {
    for (args, says) in [
        (
            &["lint", "--deny", "everything"][..],
            "`--deny` takes `warnings`",
        ),
        (
            &["lint", "--allow", "handler_not_async"][..],
            "cannot be silenced",
        ),
        (&["lint", "--allow", "no_such_rule"][..], "unknown rule"),
        (&["lint", "--frobnicate"][..], "unknown option"),
        (&["lint", "no/such/path"][..], "no such file or directory"),
        (&["explain", "CATGA999"][..], "takes a rule id or name"),
        (&["dance"][..], "expected a command"),
    ] {
        let output = catga(args);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_file_that_does_not_parse_is_an_error_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("catga-lint-parse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("broken.rs"), "fn main( {").unwrap();
    let output = catga(&["lint", dir.to_str().unwrap()]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not parse") && stderr.contains("broken.rs:1:"),
        "{stderr}"
    );
}

#[test]
fn explain_and_rules_print_the_catalogue() {
    let explain = catga(&["catga", "explain", "sync_lock_across_await"]);
    let text = String::from_utf8(explain.stdout).unwrap();
    assert_eq!(explain.status.code(), Some(0));
    assert!(text.starts_with("### CATGA025"), "{text}");
    let rules = String::from_utf8(catga(&["rules"]).stdout).unwrap();
    assert_eq!(rules.lines().count(), RULES.len());
}
