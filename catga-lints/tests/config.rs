//! `[workspace.metadata.catga.lint]`: files it excludes are not linted when `cargo catga lint`
//! finds the workspace's files itself, rules it allows are silent in the files it names, and
//! without it (or with paths given on the command line) the same code is reported.

use std::path::{Path, PathBuf};
use std::process::Output;

/// A scratch workspace: `app` (clean, except an `unwrap` in `app/tests/`) and
/// `fixtures/clash` (two handlers of one command, on purpose).
struct Workspace {
    root: PathBuf,
}

const APP: &str = r#"
use catga_core::prelude::*;

#[command(output = u64, local)]
#[derive(Debug, Serialize, Deserialize)]
pub struct PlaceOrder;

#[handler]
async fn place(_cmd: PlaceOrder) -> Result<u64, std::io::Error> {
    Ok(1)
}
"#;

const APP_TEST: &str = r#"
use catga_core::prelude::*;

#[command(output = u64, local)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Parse { pub text: String }

#[handler]
async fn parse(cmd: Parse) -> Result<u64, std::io::Error> {
    Ok(cmd.text.parse().unwrap())
}
"#;

const CLASH: &str = r#"
use catga_core::prelude::*;

#[command(output = u32, local)]
#[derive(Debug, Serialize, Deserialize)]
pub struct Reserve;

#[handler]
async fn reserve(_cmd: Reserve) -> Result<u32, std::io::Error> {
    Ok(1)
}

#[handler]
async fn reserve_again(_cmd: Reserve) -> Result<u32, std::io::Error> {
    Ok(2)
}
"#;

impl Workspace {
    /// Writes the workspace; `config` is appended to its root `Cargo.toml`.
    fn new(label: &str, config: &str) -> Workspace {
        let root =
            std::env::temp_dir().join(format!("catga-lint-config-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |path: &str, text: &str| {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "Cargo.toml",
            &format!(
                "[workspace]\nresolver = \"3\"\nmembers = [\"app\", \"fixtures/clash\"]\n\n{config}"
            ),
        );
        for (dir, name) in [("app", "app"), ("fixtures/clash", "clash")] {
            write(
                &format!("{dir}/Cargo.toml"),
                &format!("[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\n"),
            );
        }
        write("app/src/lib.rs", APP);
        write("app/tests/parse.rs", APP_TEST);
        write("fixtures/clash/src/lib.rs", CLASH);
        Workspace { root }
    }

    fn lint(&self, extra: &[&str]) -> (Option<i32>, String) {
        let Output { status, stderr, .. } =
            std::process::Command::new(env!("CARGO_BIN_EXE_cargo-catga"))
                .current_dir(&self.root)
                .args(["catga", "lint", "--deny", "warnings"])
                .args(extra)
                .output()
                .expect("run cargo-catga");
        (status.code(), String::from_utf8(stderr).unwrap())
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const CONFIGURED: &str = r#"
[workspace.metadata.catga.lint]
exclude = ["fixtures/**"]

[workspace.metadata.catga.lint.allow]
unwrap_in_handler = ["app/tests/**"]
"#;

#[test]
fn without_configuration_the_fixture_and_the_test_are_reported() {
    let ws = Workspace::new("none", "");
    let (code, stderr) = ws.lint(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error[CATGA054]") && stderr.contains("fixtures/clash/src/lib.rs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning[CATGA030]") && stderr.contains("app/tests/parse.rs"),
        "{stderr}"
    );
    assert!(!stderr.contains("excluded by"), "{stderr}");
}

#[test]
fn excluded_files_are_not_linted_and_allowed_rules_are_silent_where_configured() {
    let ws = Workspace::new("configured", CONFIGURED);
    let (code, stderr) = ws.lint(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("catga lint: 0 errors, 0 warnings")
            && stderr.contains("; 1 excluded by [workspace.metadata.catga.lint]"),
        "{stderr}"
    );
}

#[test]
fn an_allowed_rule_still_fires_outside_its_patterns() {
    let ws = Workspace::new(
        "elsewhere",
        "[workspace.metadata.catga.lint]\nexclude = [\"fixtures\"]\nallow.unwrap_in_handler = [\"app/src/**\"]\n",
    );
    let (code, stderr) = ws.lint(&[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("warning[CATGA030]"), "{stderr}");
    assert!(!stderr.contains("CATGA054"), "{stderr}");
}

#[test]
fn paths_given_on_the_command_line_are_linted_as_given() {
    let ws = Workspace::new("paths", CONFIGURED);
    let (code, stderr) = ws.lint(&["fixtures"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error[CATGA054]"), "{stderr}");
}

#[test]
fn a_mistake_in_the_configuration_stops_the_run() {
    for (config, says) in [
        (
            "[workspace.metadata.catga.lint]\nexlude = [\"fixtures/**\"]\n",
            "unknown key `exlude`",
        ),
        (
            "[workspace.metadata.catga.lint.allow]\nduplicate_handler = [\"fixtures/**\"]\n",
            "cannot be silenced",
        ),
    ] {
        let ws = Workspace::new("mistake", config);
        let (code, stderr) = ws.lint(&[]);
        assert_eq!(code, Some(2), "{config}: {stderr}");
        assert!(stderr.contains(says), "{config}: {stderr}");
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lint_repository(paths: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cargo-catga"))
        .current_dir(repository())
        .args(["catga", "lint", "--deny", "warnings"])
        .args(paths)
        .output()
        .expect("run cargo-catga");
    (
        output.status.code(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The README's command, in this repository: its deliberate fixtures are excluded by the root
/// `Cargo.toml`, not left out by chance.
#[test]
fn the_readme_command_passes_in_this_repository() {
    let (code, stderr) = lint_repository(&[]);
    let summary = stderr.lines().last().unwrap_or_default();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        summary.starts_with("catga lint: 0 errors, 0 warnings")
            && summary.contains("excluded by [workspace.metadata.catga.lint]"),
        "{summary}"
    );
}

/// The same fixtures, named on the command line, are reported: the exclusion is what keeps
/// them out of the workspace run.
#[test]
fn this_repositorys_startup_fixtures_fire_when_linted_by_path() {
    let (code, stderr) = lint_repository(&["tests/fixtures", "tests/startup.rs"]);
    assert_eq!(code, Some(1), "{stderr}");
    for expected in ["error[CATGA054]", "error[CATGA055]", "warning[CATGA052]"] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
}
