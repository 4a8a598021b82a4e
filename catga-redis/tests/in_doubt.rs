//! In doubt means in doubt: a request that may have run is never run again by the transport
//! unless that is safe, and a caller's error says whether its request may have been handled.
//! - A request whose instance died before answering is claimed by a live one: a command not
//!   declared `idempotent` is answered `in_doubt` and kept in the dead-letter store, not run
//!   again; an idempotent command and a query run again.
//! - `Unreachable` only when nothing can have been sent (a refused connection); a connection
//!   lost while sending or waiting, no reply in time, an unreadable reply: in doubt.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::eventually;
use catga_core::transport::{Transport, TransportError};
use catga_core::{MessageKind, WireFormat};
use catga_redis::RedisTransport;
use common::private_redis::{Persistence, PrivateRedis};
use common::{Options, Server, pending, xlen};
use redis::aio::MultiplexedConnection;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

#[command(output = u64, idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetLimit {
    pub cents: u64,
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Balance;

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Default)]
pub struct Billing {
    charged: AtomicU32,
    limits: AtomicU32,
    balances: AtomicU32,
}

pub mod billing {
    use super::*;

    #[handler]
    impl Billing {
        async fn charge(&self, cmd: Charge) -> Result<u64, Never> {
            self.charged.fetch_add(1, Ordering::SeqCst);
            Ok(cmd.cents)
        }

        async fn set_limit(&self, cmd: SetLimit) -> Result<u64, Never> {
            self.limits.fetch_add(1, Ordering::SeqCst);
            Ok(cmd.cents)
        }

        async fn balance(&self, _q: Balance) -> Result<u64, Never> {
            self.balances.fetch_add(1, Ordering::SeqCst);
            Ok(42)
        }
    }
}

fn caller(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("caller")
        .handlers(|_| false)
        .request_timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The group `group` on `stream` with one consumer, `ghost`, that will read and die.
async fn ghost_group(raw: &mut MultiplexedConnection, stream: &str, group: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .unwrap();
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(stream)
        .arg(group)
        .arg("ghost")
        .query_async::<()>(raw)
        .await
        .unwrap();
}

/// Reads one new entry of `stream` as `ghost` and returns its fields; the ghost then dies
/// without answering or acknowledging.
async fn ghost_reads(
    raw: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<(String, Vec<u8>)> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("ghost")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(raw)
        .await
        .unwrap();
    let entry = reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .next()
        .expect("the request is on the stream");
    entry
        .map
        .into_iter()
        .map(|(k, v)| match v {
            redis::Value::BulkString(b) => (k, b),
            other => panic!("unexpected field value {other:?}"),
        })
        .collect()
}

/// Sends `request` from a caller while the only consumer of `billing` is a ghost that reads
/// it and dies; then a live instance starts and claims it. Returns the caller's result and
/// the live instance's counts and dead letters.
async fn after_a_dead_instance<R>(
    test: &str,
    stream_name: &str,
    request: R,
) -> Option<(
    Result<R::Output, Error>,
    Arc<Billing>,
    MemoryDeadLetterStore,
)>
where
    R: catga_core::Request + Send + 'static,
    R::Output: Send + 'static,
{
    let server = Server::get(test).await?;
    let redis = server
        .transport_with(Options {
            ack_wait: Some(Duration::from_millis(300)),
            ..server.options()
        })
        .await;
    let stream = redis.request_stream(stream_name);
    let mut raw = server.raw().await;
    ghost_group(&mut raw, &stream, "billing").await;
    let caller = caller(&redis);
    let call = tokio::spawn(async move { caller.send(request).await });
    eventually("the request is on its stream", || async {
        xlen(&mut raw.clone(), &stream).await == 1
    })
    .await;
    ghost_reads(&mut raw, &stream, "billing").await;

    let state = Arc::new(Billing::default());
    let letters = MemoryDeadLetterStore::new();
    let live = Catga::builder()
        .state_arc(state.clone())
        .transport(redis.clone())
        .service("billing")
        .handlers(|h| h.name.starts_with("in_doubt::billing::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = live.serve().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the caller is answered")
        .unwrap();
    eventually("the claimed request is settled", || async {
        pending(&mut raw.clone(), &stream, "billing").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(xlen(&mut raw, &stream).await, 0, "answered and deleted");
    Some((result, state, letters))
}

#[tokio::test]
async fn a_command_whose_instance_died_is_answered_in_doubt_and_kept_not_run_again() {
    let Some((result, state, letters)) =
        after_a_dead_instance("in-doubt", "Charge", Charge { cents: 500 }).await
    else {
        return;
    };
    let err = result.unwrap_err();
    assert_eq!(err.code(), "in_doubt", "{err:?}");
    assert!(err.is_in_doubt(), "the caller knows it may have been done");
    assert!(!err.is_retryable(), "and is not told to do it again");
    assert_eq!(state.charged.load(Ordering::SeqCst), 0, "not charged again");
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].code, "in_doubt");
    assert_eq!(kept[0].message, "Charge");
    assert_eq!(kept[0].payload.as_deref(), Some(&br#"{"cents":500}"#[..]));
}

#[tokio::test]
async fn an_idempotent_command_whose_instance_died_is_run_again() {
    let Some((result, state, letters)) =
        after_a_dead_instance("idempotent", "SetLimit", SetLimit { cents: 900 }).await
    else {
        return;
    };
    assert_eq!(result.unwrap(), 900);
    assert_eq!(state.limits.load(Ordering::SeqCst), 1);
    assert_eq!(letters.count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_query_whose_instance_died_is_run_again() {
    let Some((result, state, letters)) =
        after_a_dead_instance("query-again", "Balance", Balance).await
    else {
        return;
    };
    assert_eq!(result.unwrap(), 42);
    assert_eq!(state.balances.load(Ordering::SeqCst), 1);
    assert_eq!(letters.count().await.unwrap(), 0);
}

async fn private_transport(server: &PrivateRedis) -> RedisTransport {
    let options = Options {
        prefix: Some("recovery".to_string()),
        ack_wait: Some(Duration::from_secs(2)),
        ..Options::for_tests()
    };
    common::transport::connect(server.url(), &options)
        .await
        .expect("the private server is up")
}

fn envelope(name: &'static str, kind: MessageKind, payload: &[u8]) -> Envelope {
    Envelope::with_payload(
        name,
        kind,
        &Context::new(),
        WireFormat::Json,
        payload.to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_unreachable_only_when_nothing_can_have_been_sent() {
    if !common::private_redis::available("unreachable") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::None).await;
    let redis = private_transport(&server).await;
    let tick = || envelope("Tick", MessageKind::Event, br#"{"n":1}"#);
    redis.publish(tick()).await.unwrap();
    server.kill();

    let (mut unreachable, mut in_doubt) = (0, 0);
    for _ in 0..50 {
        match redis.publish(tick()).await {
            Err(err @ TransportError::Unreachable(_)) => {
                assert!(!err.is_in_doubt(), "nothing was sent: {err}");
                assert!(err.is_retryable());
                unreachable += 1;
                if unreachable == 3 {
                    break;
                }
            }
            Err(err @ TransportError::Broker(_)) => {
                // The command went to a connection that was already dead: it may have been
                // written before the reset was noticed.
                assert!(err.is_in_doubt(), "{err}");
                in_doubt += 1;
            }
            other => panic!("a publish to a dead server: {other:?}"),
        }
    }
    println!("publishing to a dead server: {in_doubt} in doubt, then {unreachable} unreachable");
    assert_eq!(unreachable, 3, "a refused connection is reported as such");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_server_dies_while_the_caller_waits_is_in_doubt() {
    if !common::private_redis::available("dies-waiting") {
        return;
    }
    let mut server = PrivateRedis::start(Persistence::None).await;
    let redis = private_transport(&server).await;
    let stream = redis.request_stream("Charge");
    let mut raw = server.raw().await;
    ghost_group(&mut raw, &stream, "billing").await;
    let caller = redis.clone();
    let call = tokio::spawn(async move {
        caller
            .request(
                envelope("Charge", MessageKind::Command, br#"{"cents":1}"#),
                Duration::from_secs(60),
            )
            .await
    });
    eventually("the request is on its stream", || async {
        xlen(&mut raw.clone(), &stream).await == 1
    })
    .await;
    server.kill();
    let result = call.await.unwrap();
    let Err(err @ TransportError::Broker(_)) = result else {
        panic!("expected an in-doubt broker error, got {result:?}");
    };
    assert!(err.is_in_doubt(), "the request was on the stream: {err}");
}

#[tokio::test]
async fn no_reply_in_time_and_an_unreadable_reply_are_in_doubt() {
    let Some(server) = Server::get("unreadable-reply").await else {
        return;
    };
    let redis = server.transport().await;
    let stream = redis.request_stream("Charge");
    let mut raw = server.raw().await;
    ghost_group(&mut raw, &stream, "billing").await;

    let late = redis
        .request(
            envelope("Charge", MessageKind::Command, br#"{"cents":1}"#),
            Duration::from_millis(200),
        )
        .await;
    let Err(err @ TransportError::Timeout(_)) = late else {
        panic!("expected a timeout, got {late:?}");
    };
    assert!(err.is_in_doubt());
    ghost_reads(&mut raw, &stream, "billing").await;

    let caller = redis.clone();
    let call = tokio::spawn(async move {
        caller
            .request(
                envelope("Charge", MessageKind::Command, br#"{"cents":2}"#),
                Duration::from_secs(30),
            )
            .await
    });
    eventually("the second request is on its stream", || async {
        xlen(&mut raw.clone(), &stream).await == 2
    })
    .await;
    let fields = ghost_reads(&mut raw, &stream, "billing").await;
    let reply_to = fields
        .iter()
        .find(|(k, _)| k == "catga-reply-to")
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .expect("a request names its reply list");
    redis::cmd("RPUSH")
        .arg(&reply_to)
        .arg("not a catga reply")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let result = call.await.unwrap();
    let Err(err @ TransportError::Protocol(_)) = result else {
        panic!("expected a protocol error, got {result:?}");
    };
    assert!(err.is_in_doubt(), "{err}");
}
