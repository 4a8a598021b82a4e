//! No credential, from the URL or from an option, reaches an error, a log line (the client's
//! included, at TRACE) or a `Debug` output; credentials still authenticate.
//!
//! Every log line of this test binary goes to one buffer (a global subscriber: the client
//! logs from tasks on any thread), and each test checks the whole buffer after its own steps.

mod common;
#[path = "../../catga-core/tests/secret_capture/mod.rs"]
mod secret_capture;

use catga_nats::{ConnectError, NatsTransport};

use common::server::{PrivateServer, binary_or_skip, free_port};
use secret_capture::logs;

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
    secret_capture::everything_about(error)
}

fn assert_hidden(what: &str, shown: &str) {
    secret_capture::assert_hidden(&SECRETS, what, shown);
}

#[tokio::test]
async fn a_failed_connect_shows_no_credential_in_its_error_or_the_logs() {
    let logs = logs();
    let port = free_port(); // bound then released: nothing listens there
    let urls = [
        format!("nats://user:secretpass@127.0.0.1:{port}"),
        format!("nats://secrettoken@127.0.0.1:{port}"),
    ];
    for url in urls {
        let error = NatsTransport::connect(url)
            .token("secrettoken")
            .user_and_password("secretuser", "secretpass")
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
    let logs = logs();
    for url in [
        "http://user:secretpass@127.0.0.1:4222",
        "nats://user:secretpass@127.0.0.1:port",
    ] {
        let error = NatsTransport::connect(url)
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
    let builder = NatsTransport::connect("nats://user:secretpass@127.0.0.1:4222?token=secrettoken")
        .prefix("shop")
        .user_and_password("secretuser", "secretpass")
        .token("secrettoken")
        .nkey("SUSECRETSEED")
        .credentials_file("/etc/nats/shop.creds");
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
    let logs = logs();
    let with_user =
        PrivateServer::start_with(&binary, "auth", &["--user", "user", "--pass", "secretpass"])
            .await;
    let with_token = PrivateServer::start_with(&binary, "auth", &["--auth", "secrettoken"]).await;
    let (user_port, token_port) = (with_user.port, with_token.port);

    let transports = [
        NatsTransport::connect(format!("nats://user:secretpass@127.0.0.1:{user_port}")).await,
        NatsTransport::connect(format!("nats://127.0.0.1:{user_port}"))
            .user_and_password("user", "secretpass")
            .await,
        NatsTransport::connect(format!("nats://secrettoken@127.0.0.1:{token_port}")).await,
        NatsTransport::connect(format!("nats://127.0.0.1:{token_port}"))
            .token("secrettoken")
            .await,
    ];
    for (i, transport) in transports.into_iter().enumerate() {
        let transport = transport.unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
        let shown = format!("{transport:?}");
        assert_hidden("the transport", &shown);
        assert!(shown.contains("stream: \"catga-events\""), "{shown}");
    }

    let refused = [
        NatsTransport::connect(format!("nats://user:wrongsecret@127.0.0.1:{user_port}")).await,
        NatsTransport::connect(format!("nats://127.0.0.1:{token_port}"))
            .token("wrongsecret")
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
