//! Every option is checked when the builder is awaited, before any I/O: a value the transport
//! cannot use is refused with `ConnectError::InvalidOption`, naming the option, the value and
//! why, never silently replaced. No server is needed: the URL points at a port nothing
//! listens on, so a check that let a bad value through would end in `Unreachable` instead.
//! (`catga-nats/tests/options.rs` checks the same rules, under the same names.) The last test
//! needs the server: one that answers the connection's setup with an error is `Rejected`.

use std::net::TcpListener;
use std::time::Duration;

use catga_redis::{ConnectError, RedisConnect, RedisTransport};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A century and a day: past the longest duration an option takes.
const TOO_LONG: Duration = Duration::from_secs(101 * 365 * 24 * 60 * 60);

/// A loopback URL nothing listens on (a port bound, then released).
fn nowhere() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port();
    format!("redis://127.0.0.1:{port}")
}

fn connect() -> RedisConnect {
    RedisTransport::connect(nowhere()).response_timeout(ms(500))
}

/// Awaits `builder` and checks that it refused `option` with the value shown as `value`.
async fn refused(builder: RedisConnect, option: &str, value: &str) -> ConnectError {
    let error = builder.await.expect_err("a bad option is refused");
    match &error {
        ConnectError::InvalidOption {
            option: refused,
            value: shown,
            reason,
        } => {
            assert_eq!(*refused, option, "{error}");
            assert_eq!(shown, value, "{error}");
            assert!(!reason.is_empty());
        }
        other => panic!("`{option}` = {value}: expected InvalidOption, got {other:?}"),
    }
    error
}

/// Awaits `builder` and checks that every option passed: it went on to connect, and found
/// nobody listening.
async fn accepted(builder: RedisConnect) {
    let error = builder.await.expect_err("nothing listens there");
    assert!(
        matches!(error, ConnectError::Unreachable { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn zero_counts_are_refused() {
    refused(connect().max_deliveries(0), "max_deliveries", "0").await;
    refused(connect().batch(0), "batch", "0").await;
    refused(connect().max_len(0), "max_len", "0").await;
    refused(connect().max_payload(0), "max_payload", "0").await;
}

#[tokio::test]
async fn an_empty_backoff_is_refused() {
    refused(connect().backoff([]), "backoff", "[]").await;
    refused(connect().backoff(Vec::new()), "backoff", "[]").await;
}

#[tokio::test]
async fn durations_too_short_for_their_use_are_refused() {
    refused(connect().ack_wait(Duration::ZERO), "ack_wait", "0ns").await;
    refused(connect().ack_wait(ms(199)), "ack_wait", "199ms").await;
    refused(connect().fetch_wait(Duration::ZERO), "fetch_wait", "0ns").await;
    refused(connect().fetch_wait(ms(9)), "fetch_wait", "9ms").await;
    refused(connect().forget_idle(Duration::ZERO), "forget_idle", "0ns").await;
    refused(connect().forget_idle(ms(99)), "forget_idle", "99ms").await;
    refused(connect().reply_ttl(Duration::ZERO), "reply_ttl", "0ns").await;
    let half = Duration::from_micros(500);
    refused(connect().reply_ttl(half), "reply_ttl", "500µs").await;
    let zero = RedisTransport::connect(nowhere()).response_timeout(Duration::ZERO);
    refused(zero, "response_timeout", "0ns").await;
}

#[tokio::test]
async fn durations_over_a_hundred_years_are_refused() {
    let shown = format!("{TOO_LONG:?}");
    refused(connect().ack_wait(TOO_LONG), "ack_wait", &shown).await;
    refused(connect().reply_ttl(TOO_LONG), "reply_ttl", &shown).await;
    let backoff = connect().backoff([ms(10), TOO_LONG]);
    refused(backoff, "backoff", &shown).await;
}

#[tokio::test]
async fn forget_idle_must_outlast_a_read() {
    // A live instance is idle for up to `fetch_wait` between reads.
    let same = connect().fetch_wait(ms(500)).forget_idle(ms(500));
    refused(same, "forget_idle", "500ms (with `fetch_wait` 500ms)").await;
    let shorter = connect().fetch_wait(ms(1_000)).forget_idle(ms(300));
    refused(shorter, "forget_idle", "300ms (with `fetch_wait` 1s)").await;
}

#[tokio::test]
async fn a_prefix_that_breaks_the_key_rules_is_refused() {
    for bad in ["", "a b", "a\tb", "a\n", "a*", "a?", "a[1]", "a\\b"] {
        refused(connect().prefix(bad), "prefix", &format!("{bad:?}")).await;
    }
}

#[tokio::test]
async fn a_blank_instance_name_is_refused_with_help() {
    for blank in ["", "  \t"] {
        let error = refused(connect().instance(blank), "instance", &format!("{blank:?}")).await;
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("invalid value {blank:?} for `instance`: ")),
            "{shown}"
        );
        assert!(shown.contains("\nhelp: "), "{shown}");
    }
}

#[tokio::test]
async fn the_error_names_the_option_its_value_and_why() {
    let error = refused(connect().batch(0), "batch", "0").await;
    assert_eq!(
        error.to_string(),
        "invalid value 0 for `batch`: a fetch must ask for at least one message"
    );
}

#[tokio::test]
async fn options_are_checked_before_the_url_and_before_any_io() {
    // A URL that does not parse and a server that is not there: the option is reported.
    let builder = RedisTransport::connect("http://user:secretpass@nowhere").batch(0);
    let error = refused(builder, "batch", "0").await;
    assert!(!format!("{error:?}").contains("secretpass"));
}

#[tokio::test]
async fn the_first_bad_option_in_the_builder_order_is_reported() {
    let builder = connect().reply_ttl(Duration::ZERO).batch(0).prefix("");
    refused(builder, "prefix", "\"\"").await;
}

#[tokio::test]
async fn the_defaults_and_each_smallest_value_pass() {
    accepted(connect()).await;
    let smallest = connect()
        .prefix("a")
        .instance("pod-0")
        .max_len(1)
        .max_deliveries(1)
        .backoff([Duration::ZERO])
        .ack_wait(ms(200))
        .batch(1)
        .fetch_wait(ms(10))
        .forget_idle(ms(100))
        .max_payload(1)
        .reply_ttl(ms(1));
    accepted(smallest).await;
    accepted(connect().prefix("shop:prod-1").untrimmed()).await;
}

/// Only without the `tls` feature: with it, `rediss://` is supported (`tests/tls.rs`).
#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn a_tls_url_is_refused_as_unsupported_not_as_malformed() {
    let error = RedisTransport::connect("rediss://user:secret@127.0.0.1:6380/0")
        .await
        .expect_err("no TLS client in this build");
    assert!(
        matches!(&error, ConnectError::TlsUnsupported { url } if url.contains("***")),
        "{error:?}"
    );
    let shown = error.to_string();
    assert!(
        shown.contains("asks for TLS") && !shown.contains("secret"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_server_that_answers_the_setup_with_an_error_is_rejected_not_unreachable() {
    let url = std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    if redis::Client::open(url.as_str())
        .expect("a URL")
        .get_multiplexed_async_connection()
        .await
        .is_err()
    {
        assert!(
            std::env::var("CATGA_REQUIRE_SERVICES").is_err(),
            "redis at {url} is unreachable"
        );
        return;
    }
    // A default server has 16 databases: number 99 is refused when the connection selects it.
    let base = url
        .trim_end_matches('/')
        .rsplit_once('/')
        .map_or(url.as_str(), |(b, db)| {
            if db.chars().all(|c| c.is_ascii_digit()) {
                b
            } else {
                url.as_str()
            }
        });
    let error = RedisTransport::connect(format!("{base}/99"))
        .await
        .expect_err("no database 99");
    assert!(matches!(error, ConnectError::Rejected { .. }), "{error:?}");
    let shown = error.to_string();
    assert!(
        shown.contains("DB index"),
        "says what the server said: {shown}"
    );
    assert!(shown.contains("help:"), "says what to do: {shown}");
}
