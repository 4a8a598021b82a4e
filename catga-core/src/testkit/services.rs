//! What a test does when a server it needs is missing.
//!
//! Server-backed tests read their server's URL from the environment (`CATGA_NATS_URL`,
//! `CATGA_REDIS_URL`, …). When the server is unreachable they skip, saying why, except when
//! `CATGA_REQUIRE_SERVICES=1` (set by CI), where a missing server fails the test: a suite that
//! silently skipped everything would look green.

/// Whether a missing server fails the test (`CATGA_REQUIRE_SERVICES=1`) rather than skipping
/// it.
pub fn required() -> bool {
    std::env::var("CATGA_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The URL in the environment variable `var`, or `default`.
pub fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

/// Reports that `test` cannot run because of `why`: panics when [`required`], else prints
/// that the test is skipped, with `help` (how to provide the server). The caller then
/// returns. `why` must not hold credentials: show a URL through
/// [`redact_url`](crate::secret::redact_url).
pub fn unavailable(test: &str, why: &str, help: &str) {
    assert!(
        !required(),
        "{test}: {why} (CATGA_REQUIRE_SERVICES=1 makes a missing server a failure)"
    );
    eprintln!("skipping {test}: {why}; {help}");
}
