//! Path patterns of the lint configuration, matched against paths relative to the workspace
//! root, `/`-separated. `*` matches within one path segment, `?` one character of it, `**` any
//! number of whole segments (none included). A pattern that matches a directory matches every
//! file under it, as in `.gitignore`: `tests/fixtures` and `tests/fixtures/**` say the same.

use std::fmt;

/// One pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    text: String,
    segments: Vec<Vec<char>>,
}

impl Glob {
    /// Parses a pattern; says why when it cannot match anything inside the workspace.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let segments: Vec<Vec<char>> = pattern
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(|s| s.chars().collect())
            .collect();
        if segments.is_empty() {
            return Err(format!(
                "the pattern `{pattern}` names no path (write e.g. `tests/fixtures/**`)"
            ));
        }
        if pattern.contains('\\') {
            return Err(format!(
                "the pattern `{pattern}` contains `\\`: separate path segments with `/`"
            ));
        }
        if segments.iter().any(|s| *s == ['.', '.']) {
            return Err(format!(
                "the pattern `{pattern}` leaves the workspace (`..`): patterns are relative to the workspace root"
            ));
        }
        Ok(Glob {
            text: pattern.to_string(),
            segments,
        })
    }

    /// Whether `path` (the segments of a path relative to the workspace root) or one of its
    /// parent directories matches.
    pub fn matches(&self, path: &[&str]) -> bool {
        let path: Vec<Vec<char>> = path.iter().map(|s| s.chars().collect()).collect();
        (1..=path.len()).any(|end| segments(&self.segments, &path[..end]))
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn segments(pattern: &[Vec<char>], path: &[Vec<char>]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first.as_slice() == ['*', '*'] => {
            (0..=path.len()).any(|skip| segments(rest, &path[skip..]))
        }
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(head, tail)| segment(first, head) && segments(rest, tail)),
    }
}

fn segment(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|skip| segment(rest, &name[skip..])),
        Some(('?', rest)) => !name.is_empty() && segment(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && segment(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn matches(pattern: &str, path: &str) -> bool {
        let path: Vec<&str> = path.split('/').collect();
        Glob::new(pattern).unwrap().matches(&path)
    }

    #[test]
    fn stars_stay_in_one_segment_and_double_stars_span_any() {
        assert!(matches("tests/*.rs", "tests/startup.rs"));
        assert!(!matches("tests/*.rs", "catga-core/tests/startup.rs"));
        assert!(matches(
            "catga-*/tests/**",
            "catga-nats/tests/common/mod.rs"
        ));
        assert!(!matches("catga-*/tests/**", "catga-nats/src/lib.rs"));
        assert!(matches(
            "**/fixtures/**",
            "catga-lints/tests/fixtures/bodies/src/lib.rs"
        ));
        assert!(
            matches("**/lib.rs", "lib.rs"),
            "`**` matches no segment too"
        );
        assert!(matches("src/?ib.rs", "src/lib.rs"));
        assert!(!matches("src/?ib.rs", "src/ib.rs"));
    }

    #[test]
    fn a_directory_covers_everything_under_it() {
        assert!(matches(
            "tests/fixtures",
            "tests/fixtures/catalog/src/lib.rs"
        ));
        assert!(matches(
            "tests/fixtures/",
            "tests/fixtures/catalog/src/lib.rs"
        ));
        assert!(matches(
            "./tests/fixtures/**",
            "tests/fixtures/catalog/src/lib.rs"
        ));
        assert!(!matches("tests/fix", "tests/fixtures/catalog/src/lib.rs"));
        assert!(!matches("tests/fixtures", "tests/startup.rs"));
    }

    #[test]
    fn patterns_that_cannot_match_are_refused() {
        for bad in ["", "/", "./", "../elsewhere/**", "tests\\fixtures"] {
            assert!(Glob::new(bad).is_err(), "{bad:?}");
        }
    }
}
