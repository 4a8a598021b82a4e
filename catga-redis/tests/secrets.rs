//! No credential, from the URL or from an option, reaches an error, a log line (the client's
//! included, at TRACE) or a `Debug` output; credentials still authenticate.
//!
//! Every log line of this test binary goes to one buffer (a global subscriber, which also
//! takes the `log` records of the redis crate), and each test checks the whole buffer after
//! its own steps.

mod common;

use std::time::Duration;

use catga_core::testkit::free_port;
use catga_core::testkit::logs::{self, capture};
use catga_redis::ConnectError;

use common::Options;
use common::private_redis::{self, Persistence, PrivateRedis};
use common::transport::{builder, connect};

/// What must never be shown.
const SECRETS: [&str; 4] = ["secretpass", "secrettoken", "wrongsecret", "secretuser"];

/// `everything_about` and `assert_hidden` with this crate's error type and secrets.
fn everything_about(error: &ConnectError) -> String {
    logs::everything_about(error)
}

fn assert_hidden(what: &str, shown: &str) {
    logs::assert_hidden(&SECRETS, what, shown);
}

/// The options of a transport on the key prefix `prefix`, with `password`.
fn options(prefix: &str, password: Option<&str>) -> Options {
    Options {
        prefix: Some(prefix.to_string()),
        password: password.map(str::to_string),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_failed_connect_shows_no_credential_in_its_error_or_the_logs() {
    let logs = capture();
    let port = free_port(); // bound then released: nothing listens there
    let cases = [
        (
            format!("redis://secretuser:secretpass@127.0.0.1:{port}/0"),
            format!("redis://***@127.0.0.1:{port}/0"),
        ),
        (
            "redis+unix:///nonexistent/catga.sock?db=0&pass=secretpass".to_string(),
            "redis+unix:///nonexistent/catga.sock?db=0&pass=***".to_string(),
        ),
    ];
    for (url, redacted) in cases {
        let options = Options {
            username: Some("secretuser".to_string()),
            password: Some("secrettoken".to_string()),
            response_timeout: Some(Duration::from_secs(1)),
            ..Options::default()
        };
        let error = connect(url, &options)
            .await
            .expect_err("nothing listens there");
        assert!(
            matches!(error, ConnectError::Unreachable { .. }),
            "{error:?}"
        );
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(
            shown.contains(&redacted),
            "the error still names the server:\n{shown}"
        );
    }
    let text = logs.text();
    assert_hidden("the logs", &text);
    // The capture works.
    assert!(
        text.contains(&format!("url=redis://***@127.0.0.1:{port}/0")),
        "{text}"
    );
}

#[tokio::test]
async fn a_url_that_does_not_parse_shows_no_credential() {
    let logs = capture();
    for url in [
        "http://secretuser:secretpass@127.0.0.1:6379",
        "redis://secretuser:secretpass@127.0.0.1:6379/notadb",
    ] {
        let error = connect(url, &Options::default())
            .await
            .expect_err("not a redis URL");
        assert!(
            matches!(error, ConnectError::InvalidUrl { .. }),
            "{error:?}"
        );
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(shown.contains("***@127.0.0.1:6379"), "{shown}");
    }
    assert_hidden("the logs", &logs.text());
}

#[test]
fn the_builder_debug_shows_no_credential() {
    let options = Options {
        username: Some("secretuser".to_string()),
        ..options("shop", Some("secrettoken"))
    };
    let builder = builder("rediss://secretuser:secretpass@127.0.0.1:6380/0", &options);
    let shown = format!("{builder:?}");
    assert_hidden("the builder", &shown);
    assert!(shown.contains("rediss://***@127.0.0.1:6380/0"), "{shown}");
    assert!(shown.contains("password: Some(\"***\")"), "{shown}");
    assert!(shown.contains("prefix: \"shop\""), "{shown}");
}

#[tokio::test]
async fn a_password_from_the_url_or_the_option_authenticates_and_stays_hidden() {
    if !private_redis::available("a_password_from_the_url_or_the_option_authenticates") {
        return;
    }
    let logs = capture();
    let server = PrivateRedis::start_with_password(Persistence::None, Some("secretpass")).await;
    let port = server.port;

    let transports = [
        connect(
            format!("redis://:secretpass@127.0.0.1:{port}"),
            &options("secrets", None),
        )
        .await,
        connect(
            format!("redis://default:secretpass@127.0.0.1:{port}"),
            &options("secrets", None),
        )
        .await,
        connect(
            format!("redis://127.0.0.1:{port}"),
            &options("secrets", Some("secretpass")),
        )
        .await,
    ];
    for (i, transport) in transports.into_iter().enumerate() {
        let transport = transport.unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
        let shown = format!("{transport:?}");
        assert_hidden("the transport", &shown);
        assert!(shown.contains("secrets"), "{shown}");
    }

    let refused = [
        (format!("redis://:wrongsecret@127.0.0.1:{port}"), None),
        (format!("redis://127.0.0.1:{port}"), Some("wrongsecret")),
    ];
    for (url, password) in refused {
        let error = connect(url, &options("secrets", password))
            .await
            .expect_err("a wrong password");
        assert!(
            matches!(error, ConnectError::Unauthorized { .. }),
            "{error:?}"
        );
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(shown.contains("AuthenticationFailed"), "{shown}");
    }
    assert_hidden("the logs", &logs.text());
}
