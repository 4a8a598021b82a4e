//! The workspace's lint configuration, `[workspace.metadata.catga.lint]` in the root
//! `Cargo.toml` (read through `cargo metadata`):
//!
//! ```toml
//! [workspace.metadata.catga.lint]
//! # Files not linted, nor the modules they declare: deliberately wrong code such as fixtures.
//! exclude = ["tests/fixtures/**", "tests/startup.rs"]
//!
//! # A warning or note silenced for the files that match (an id or a name per key).
//! [workspace.metadata.catga.lint.allow]
//! command_without_idempotency = ["*/tests/**"]
//! ```
//!
//! Patterns are [`Glob`]s relative to the workspace root. The configuration applies when
//! `cargo catga lint` finds the workspace's files itself; files and directories given on the
//! command line are linted as given.

use std::path::{Component, Path, PathBuf};

use super::glob::Glob;
use crate::catalog::{self, Level, Rule};

/// Where the configuration lives, as users write it.
pub const TABLE: &str = "[workspace.metadata.catga.lint]";

/// What the configuration says; empty when there is none.
#[derive(Debug, Default)]
pub struct Config {
    /// The workspace root the patterns are relative to.
    root: PathBuf,
    /// Files not linted.
    exclude: Vec<Glob>,
    /// Rules silenced in the files that match.
    allow: Vec<(&'static Rule, Vec<Glob>)>,
}

impl Config {
    /// Reads the configuration from `cargo metadata` output (its top-level `metadata` is the
    /// workspace's `[workspace.metadata]`).
    pub fn from_metadata(metadata: &serde_json::Value) -> Result<Config, String> {
        let mut config = Config {
            root: PathBuf::from(metadata["workspace_root"].as_str().unwrap_or_default()),
            ..Config::default()
        };
        let table = &metadata["metadata"]["catga"]["lint"];
        if table.is_null() {
            return Ok(config);
        }
        let table = table
            .as_object()
            .ok_or_else(|| format!("{TABLE} in Cargo.toml must be a table"))?;
        for (key, value) in table {
            match key.as_str() {
                "exclude" => config.exclude = globs(value, "exclude")?,
                "allow" => {
                    let rules = value.as_object().ok_or_else(|| {
                        format!(
                            "{TABLE} `allow` must be a table of rule = [patterns], e.g. `allow.event_name_tense = [\"tests/**\"]`"
                        )
                    })?;
                    for (key, value) in rules {
                        let rule = catalog::find(key)
                            .ok_or_else(|| format!("{TABLE} `allow`: unknown rule `{key}`"))?;
                        if rule.level == Level::Error {
                            return Err(format!(
                                "{TABLE} `allow`: {} ({}) is an error and cannot be silenced; exclude the files that are wrong on purpose instead",
                                rule.id, rule.name
                            ));
                        }
                        config
                            .allow
                            .push((rule, globs(value, &format!("allow.{key}"))?));
                    }
                }
                other => {
                    return Err(format!(
                        "{TABLE} has an unknown key `{other}` (expected `exclude` or `allow`)"
                    ));
                }
            }
        }
        Ok(config)
    }

    /// Whether `file` is excluded from the run.
    pub fn excludes(&self, file: &Path) -> bool {
        !self.exclude.is_empty() && self.relative(file).is_some_and(|p| any(&self.exclude, &p))
    }

    /// Whether `rule` is silenced in `file`.
    pub fn allows(&self, rule: &Rule, file: &Path) -> bool {
        self.allow.iter().any(|(allowed, globs)| {
            allowed.id == rule.id && self.relative(file).is_some_and(|p| any(globs, &p))
        })
    }

    /// The segments of `file` relative to the root, `..` resolved by the path's text (module
    /// paths like `tests/../../other/tests/mod.rs` come from `#[path]` attributes); `None`
    /// outside the root.
    fn relative(&self, file: &Path) -> Option<Vec<String>> {
        let mut segments: Vec<String> = Vec::new();
        for component in file.strip_prefix(&self.root).ok()?.components() {
            match component {
                Component::Normal(name) => segments.push(name.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    segments.pop()?;
                }
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(segments)
    }
}

fn any(globs: &[Glob], path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    globs.iter().any(|g| g.matches(&path))
}

fn globs(value: &serde_json::Value, key: &str) -> Result<Vec<Glob>, String> {
    let list = value.as_array().ok_or_else(|| {
        format!("{TABLE} `{key}` must be a list of path patterns, e.g. [\"tests/fixtures/**\"]")
    })?;
    list.iter()
        .map(|pattern| {
            let pattern = pattern.as_str().ok_or_else(|| {
                format!("{TABLE} `{key}` must be a list of strings; got {pattern}")
            })?;
            Glob::new(pattern).map_err(|why| format!("{TABLE} `{key}`: {why}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Config;

    fn config(lint: serde_json::Value) -> Result<Config, String> {
        Config::from_metadata(&serde_json::json!({
            "workspace_root": "/ws",
            "metadata": { "catga": { "lint": lint } },
        }))
    }

    #[test]
    fn excluded_and_allowed_paths_are_relative_to_the_root() {
        let config = config(serde_json::json!({
            "exclude": ["tests/fixtures/**"],
            "allow": { "CATGA061": ["catga-*/tests/**"] },
        }))
        .unwrap();
        assert!(config.excludes(Path::new("/ws/tests/fixtures/catalog/src/lib.rs")));
        assert!(!config.excludes(Path::new("/ws/tests/startup.rs")));
        assert!(!config.excludes(Path::new("/elsewhere/tests/fixtures/a.rs")));
        let rule = catga_rule("command_without_idempotency");
        let through_path_attr = Path::new("/ws/catga-nats/tests/../../catga-core/tests/mod.rs");
        assert!(config.allows(rule, through_path_attr));
        assert!(!config.allows(rule, Path::new("/ws/catga-core/src/lib.rs")));
        assert!(!config.allows(catga_rule("event_name_tense"), through_path_attr));
    }

    fn catga_rule(name: &str) -> &'static crate::Rule {
        crate::catalog::find(name).unwrap()
    }

    #[test]
    fn no_table_is_an_empty_configuration() {
        let none = Config::from_metadata(&serde_json::json!({
            "workspace_root": "/ws",
            "metadata": null,
        }))
        .unwrap();
        assert!(!none.excludes(Path::new("/ws/tests/fixtures/a.rs")));
    }

    #[test]
    fn mistakes_are_reported_not_ignored() {
        for (lint, says) in [
            (serde_json::json!({ "exlude": [] }), "unknown key `exlude`"),
            (
                serde_json::json!({ "exclude": "tests/**" }),
                "list of path patterns",
            ),
            (serde_json::json!({ "exclude": [3] }), "list of strings"),
            (
                serde_json::json!({ "exclude": ["../x"] }),
                "leaves the workspace",
            ),
            (serde_json::json!({ "allow": ["x"] }), "table of rule"),
            (
                serde_json::json!({ "allow": { "no_such_rule": [] } }),
                "unknown rule",
            ),
            (
                serde_json::json!({ "allow": { "duplicate_handler": ["**"] } }),
                "cannot be silenced",
            ),
        ] {
            let err = config(lint.clone()).expect_err(&lint.to_string());
            assert!(err.contains(says), "{lint}: {err}");
        }
    }
}
