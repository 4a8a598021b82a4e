//! No credential, from the URL or from an option, reaches an error, a log line (the client's
//! included, at TRACE) or a `Debug` output; credentials still authenticate.
//!
//! Every log line of this test binary goes to one buffer (a global subscriber, which also
//! takes the `log` records of the redis crate), and each test checks the whole buffer after
//! its own steps.

mod common;
#[path = "../../catga-core/tests/secret_capture/mod.rs"]
mod secret_capture;

use std::net::TcpListener;
use std::time::Duration;

use catga_redis::{ConnectError, RedisTransport};

use common::private_redis::{self, Persistence, PrivateRedis};
use secret_capture::logs;

/// What must never be shown.
const SECRETS: [&str; 4] = ["secretpass", "secrettoken", "wrongsecret", "secretuser"];

/// `everything_about` and `assert_hidden` with this crate's error type and secrets.
fn everything_about(error: &ConnectError) -> String {
    secret_capture::everything_about(error)
}

fn assert_hidden(what: &str, shown: &str) {
    secret_capture::assert_hidden(&SECRETS, what, shown);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

#[tokio::test]
async fn a_failed_connect_shows_no_credential_in_its_error_or_the_logs() {
    let logs = logs();
    let port = closed_port();
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
        let error = RedisTransport::connect(url)
            .user_and_password("secretuser", "secrettoken")
            .response_timeout(Duration::from_secs(1))
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
    let logs = logs();
    for url in [
        "http://secretuser:secretpass@127.0.0.1:6379",
        "redis://secretuser:secretpass@127.0.0.1:6379/notadb",
    ] {
        let error = RedisTransport::connect(url)
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
    let builder = RedisTransport::connect("rediss://secretuser:secretpass@127.0.0.1:6380/0")
        .prefix("shop")
        .user_and_password("secretuser", "secrettoken");
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
    let logs = logs();
    let server = PrivateRedis::start_with_password(Persistence::None, Some("secretpass")).await;
    let port = server.port;

    let transports = [
        RedisTransport::connect(format!("redis://:secretpass@127.0.0.1:{port}"))
            .prefix("secrets")
            .await,
        RedisTransport::connect(format!("redis://default:secretpass@127.0.0.1:{port}"))
            .prefix("secrets")
            .await,
        RedisTransport::connect(format!("redis://127.0.0.1:{port}"))
            .prefix("secrets")
            .password("secretpass")
            .await,
    ];
    for (i, transport) in transports.into_iter().enumerate() {
        let transport = transport.unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
        let shown = format!("{transport:?}");
        assert_hidden("the transport", &shown);
        assert!(shown.contains("secrets"), "{shown}");
    }

    let refused = [
        RedisTransport::connect(format!("redis://:wrongsecret@127.0.0.1:{port}")),
        RedisTransport::connect(format!("redis://127.0.0.1:{port}")).password("wrongsecret"),
    ];
    for builder in refused {
        let error = builder.await.expect_err("a wrong password");
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
