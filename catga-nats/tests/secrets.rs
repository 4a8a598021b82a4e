//! No credential, from the URL or from an option, reaches an error, a log line (the client's
//! included, at TRACE) or a `Debug` output; credentials still authenticate.
//!
//! Every log line of this test binary goes to one buffer (a global subscriber: the client
//! logs from tasks on any thread), and each test checks the whole buffer after its own steps.

mod common;

use catga_core::testkit::free_port;
use catga_core::testkit::logs::{self, capture};
use catga_nats::ConnectError;

use common::Options;
use common::server::{PrivateServer, binary_or_skip};
use common::transport::{builder, connect};

/// What must never be shown.
const SECRETS: [&str; 5] = [
    "secretpass",
    "secrettoken",
    "wrongsecret",
    "SECRETSEED",
    "secretuser",
];

/// `everything_about` and `assert_hidden` with this crate's error type and secrets.
fn everything_about(error: &ConnectError) -> String {
    logs::everything_about(error)
}

fn assert_hidden(what: &str, shown: &str) {
    logs::assert_hidden(&SECRETS, what, shown);
}

/// The options a test authenticates with.
fn user_options(user: &str, password: &str) -> Options {
    Options {
        user_and_password: Some((user.to_string(), password.to_string())),
        ..Options::default()
    }
}

fn token_options(token: &str) -> Options {
    Options {
        token: Some(token.to_string()),
        ..Options::default()
    }
}

#[tokio::test]
async fn a_failed_connect_shows_no_credential_in_its_error_or_the_logs() {
    let logs = capture();
    let port = free_port(); // bound then released: nothing listens there
    let urls = [
        format!("nats://user:secretpass@127.0.0.1:{port}"),
        format!("nats://secrettoken@127.0.0.1:{port}"),
    ];
    for url in urls {
        let options = Options {
            token: Some("secrettoken".to_string()),
            ..user_options("secretuser", "secretpass")
        };
        let error = connect(url, &options)
            .await
            .expect_err("nothing listens on the port");
        assert!(
            matches!(error, ConnectError::Unreachable { .. }),
            "{error:?}"
        );
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(
            shown.contains(&format!("nats://***@127.0.0.1:{port}")),
            "the error still names the server:\n{shown}"
        );
    }
    let text = logs.text();
    assert_hidden("the logs", &text);
    // The capture works, and holds the client's own debug lines about this server.
    assert!(
        text.contains(&format!("url=nats://***@127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("connection attempt failed"), "{text}");
}

#[tokio::test]
async fn a_url_that_does_not_parse_shows_no_credential() {
    let logs = capture();
    for url in [
        "http://user:secretpass@127.0.0.1:4222",
        "nats://user:secretpass@127.0.0.1:port",
    ] {
        let error = connect(url, &Options::default())
            .await
            .expect_err("not a NATS URL");
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(shown.contains("***@127.0.0.1"), "{shown}");
    }
    assert_hidden("the logs", &logs.text());
}

#[test]
fn the_builder_debug_shows_no_credential() {
    let options = Options {
        prefix: Some("shop".to_string()),
        token: Some("secrettoken".to_string()),
        nkey: Some("SUSECRETSEED".to_string()),
        credentials_file: Some("/etc/nats/shop.creds".into()),
        ..user_options("secretuser", "secretpass")
    };
    let builder = builder(
        "nats://user:secretpass@127.0.0.1:4222?token=secrettoken",
        &options,
    );
    let shown = format!("{builder:?}");
    assert_hidden("the builder", &shown);
    assert!(
        shown.contains("nats://***@127.0.0.1:4222?token=***"),
        "{shown}"
    );
    assert!(shown.contains("prefix: \"shop\""), "{shown}");
    assert!(shown.contains("/etc/nats/shop.creds"), "{shown}");
}

#[tokio::test]
async fn credentials_from_the_url_or_the_options_authenticate_and_stay_hidden() {
    const TEST: &str = "credentials_from_the_url_or_the_options_authenticate_and_stay_hidden";
    let Some(binary) = binary_or_skip(TEST) else {
        return;
    };
    let logs = capture();
    let with_user =
        PrivateServer::start_with(&binary, "auth", &["--user", "user", "--pass", "secretpass"])
            .await;
    let with_token = PrivateServer::start_with(&binary, "auth", &["--auth", "secrettoken"]).await;
    let (user_port, token_port) = (with_user.port, with_token.port);

    let plain = Options::default();
    let transports = [
        connect(
            format!("nats://user:secretpass@127.0.0.1:{user_port}"),
            &plain,
        )
        .await,
        connect(
            format!("nats://127.0.0.1:{user_port}"),
            &user_options("user", "secretpass"),
        )
        .await,
        connect(format!("nats://secrettoken@127.0.0.1:{token_port}"), &plain).await,
        connect(
            format!("nats://127.0.0.1:{token_port}"),
            &token_options("secrettoken"),
        )
        .await,
    ];
    for (i, transport) in transports.into_iter().enumerate() {
        let transport = transport.unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
        let shown = format!("{transport:?}");
        assert_hidden("the transport", &shown);
        assert!(shown.contains("stream: \"catga-events\""), "{shown}");
    }

    let refused = [
        connect(
            format!("nats://user:wrongsecret@127.0.0.1:{user_port}"),
            &plain,
        )
        .await,
        connect(
            format!("nats://127.0.0.1:{token_port}"),
            &token_options("wrongsecret"),
        )
        .await,
    ];
    for refused in refused {
        let error = refused.expect_err("wrong credentials");
        assert!(
            matches!(error, ConnectError::Unauthorized { .. }),
            "{error:?}"
        );
        let shown = everything_about(&error);
        assert_hidden("the error", &shown);
        assert!(shown.contains("authorization violation"), "{shown}");
    }
    let text = logs.text();
    assert_hidden("the logs", &text);
    assert!(text.contains("NATS transport ready"), "{text}");
}
