//! Redis's own side of things, through raw commands: entries a dead instance read are claimed
//! by another; a request stream is this service's alone, so an answered request is deleted,
//! a panicking one too, and it is not run again after its caller gave up; entries injected
//! by hand that are not catga messages are kept and acknowledged; an oversized message never
//! reaches the server. (What every transport promises is the conformance suite.)

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::eventually;
use catga_core::transport::{Transport, TransportError};
use catga_core::{MessageKind, WireFormat};
use catga_redis::RedisTransport;
use common::{Options, Server, pending, xlen};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashRequest;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the bookkeeping is poisoned")]
pub struct Poisoned;

/// What the shipping service handled.
#[derive(Default)]
pub struct Seen {
    shipped: Mutex<Vec<u64>>,
    placed: Mutex<Vec<u64>>,
    crashes: AtomicU32,
}

impl Seen {
    fn shipped(&self) -> Vec<u64> {
        self.shipped.lock().unwrap().clone()
    }

    fn placed(&self) -> Vec<u64> {
        let mut placed = self.placed.lock().unwrap().clone();
        placed.sort_unstable();
        placed
    }
}

pub mod shipping {
    use super::*;

    #[handler(allow(panic_in_handler))]
    impl Seen {
        async fn ship(&self, cmd: Ship) -> Result<u64, Poisoned> {
            self.shipped.lock().map_err(|_| Poisoned)?.push(cmd.order);
            Ok(cmd.order * 10)
        }

        async fn crash(&self, _cmd: CrashRequest) -> Result<u32, Poisoned> {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in the request handler");
        }

        async fn on_placed(&self, event: &OrderPlaced) -> Result<(), Poisoned> {
            self.placed.lock().map_err(|_| Poisoned)?.push(event.order);
            Ok(())
        }
    }
}

/// An instance of the shipping service, keeping what it rejects in `letters`.
fn shipping(redis: &RedisTransport, letters: &MemoryDeadLetterStore) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(redis.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("streams::shipping::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, seen)
}

/// A service without handlers: its sends go over Redis.
fn orders(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("orders")
        .handlers(|_| false)
        // Far longer than the tests: an answer means it was answered, not timed out.
        .request_timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

#[tokio::test]
async fn entries_a_dead_instance_read_are_claimed_and_handled_by_another() {
    let Some(server) = Server::get("claim").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            ack_wait: Some(Duration::from_millis(200)),
            ..server.options()
        })
        .await;
    let stream = redis.event_stream("OrderPlaced");
    let mut raw = server.raw().await;
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("shipping")
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let orders = orders(&redis);
    for order in 0..5 {
        orders.publish(OrderPlaced { order }).await.unwrap();
    }
    // An instance of `shipping` reads them, then dies without acknowledging any.
    let read: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("shipping")
        .arg("ghost")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!matches!(read, redis::Value::Nil));
    assert_eq!(pending(&mut raw, &stream, "shipping").await, 5);

    let (shipping, seen) = shipping(&redis, &MemoryDeadLetterStore::new());
    let serving = shipping.serve().await.unwrap();
    eventually("the survivor claims and handles all five", || async {
        seen.placed().len() >= 5
    })
    .await;
    eventually("and acknowledges them", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(seen.placed(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn an_answered_request_is_deleted_from_its_stream() {
    let Some(server) = Server::get("request").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping(&redis, &MemoryDeadLetterStore::new());
    let serving = shipping.serve().await.unwrap();
    let orders = orders(&server.transport().await);
    assert_eq!(orders.send(Ship { order: 4 }).await.unwrap(), 40);
    assert_eq!(orders.send(Ship { order: 5 }).await.unwrap(), 50);
    assert_eq!(seen.shipped(), vec![4, 5]);
    serving.shutdown().await;

    let mut raw = server.raw().await;
    assert_eq!(
        xlen(&mut raw, &redis.request_stream("Ship")).await,
        0,
        "an answered request is deleted from its stream"
    );
}

/// A panicking request is answered at once (the conformance suite checks the answer), then
/// acknowledged and deleted, and not run again however many claim cycles pass.
#[tokio::test]
async fn a_panicking_request_is_acknowledged_and_deleted_not_run_again() {
    let Some(server) = Server::get("panic-request").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            max_deliveries: Some(3),
            ack_wait: Some(Duration::from_millis(300)),
            ..server.options()
        })
        .await;
    let letters = MemoryDeadLetterStore::new();
    let (app, seen) = shipping(&redis, &letters);
    let serving = app.serve().await.unwrap();
    let err = orders(&redis).send(CrashRequest).await.unwrap_err();
    assert_eq!(err.code(), "panic", "{err:?}");

    // Several claim cycles later, the panicking request has not been run again.
    let stream = redis.request_stream("CrashRequest");
    let mut raw = server.raw().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    serving.shutdown().await;
    assert_eq!(seen.crashes.load(Ordering::SeqCst), 1, "run once");
    assert_eq!(
        pending(&mut raw, &stream, "shipping").await,
        0,
        "acknowledged"
    );
    assert_eq!(xlen(&mut raw, &stream).await, 0, "and deleted");
    assert_eq!(letters.count().await.unwrap(), 0);
}

#[tokio::test]
async fn unreadable_entries_are_kept_and_the_consumer_goes_on() {
    let Some(server) = Server::get("malformed").await else {
        return;
    };
    let redis = server.transport().await;
    let rejects = MemoryDeadLetterStore::new();
    let (shipping, seen) = shipping(&redis, &rejects);
    let serving = shipping.serve().await.unwrap();

    // Injected by hand, as a foreign producer (or a bug) might.
    let stream = redis.event_stream("OrderPlaced");
    let mut raw = server.raw().await;
    let id = uuid::Uuid::now_v7().to_string();
    let bad_fields: &[(&[u8], &[u8])] = &[
        (b"catga-id", b"not-a-uuid"),
        (b"catga-name", b"OrderPlaced"),
        (b"catga-kind", b"event"),
        (b"catga-payload", b"{\"order\":1}"),
    ];
    let binary_name: &[(&[u8], &[u8])] = &[(b"\xff\xfe", b"x"), (b"catga-payload", b"{}")];
    let bad_payload: &[(&[u8], &[u8])] = &[
        (b"catga-id", id.as_bytes()),
        (b"catga-name", b"OrderPlaced"),
        (b"catga-kind", b"event"),
        (b"content-type", b"application/json"),
        (b"catga-payload", b"{not json"),
    ];
    for fields in [bad_fields, binary_name, bad_payload] {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&stream).arg("*");
        for (k, v) in fields {
            xadd.arg(*k).arg(*v);
        }
        xadd.query_async::<String>(&mut raw).await.unwrap();
    }
    orders(&redis)
        .publish(OrderPlaced { order: 7 })
        .await
        .unwrap();

    eventually("the good event after the bad ones is handled", || async {
        !seen.placed().is_empty()
    })
    .await;
    eventually("all three bad entries are kept", || async {
        rejects.list(10).await.unwrap().len() >= 3
    })
    .await;
    serving.shutdown().await;

    assert_eq!(seen.placed(), vec![7]);
    let kept = rejects.list(10).await.unwrap();
    assert_eq!(kept.len(), 3, "{kept:?}");
    let mut codes: Vec<&str> = kept.iter().map(|r| r.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(codes, ["codec", "envelope", "envelope"]);
    let undecodable = kept.iter().find(|r| r.code == "codec").unwrap();
    assert_eq!(undecodable.payload.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(
        pending(&mut raw, &stream, "shipping").await,
        0,
        "every bad entry was acknowledged, none is redelivered"
    );
}

#[tokio::test]
async fn an_oversized_message_never_reaches_the_server() {
    let Some(server) = Server::get("toolarge").await else {
        return;
    };
    let redis = server.transport().await;
    let big = Envelope::with_payload(
        "OrderPlaced",
        MessageKind::Event,
        &Context::new(),
        WireFormat::Json,
        vec![b' '; 2 << 20],
    );
    assert!(matches!(
        redis.publish(big).await,
        Err(TransportError::TooLarge { limit, .. }) if limit == 1 << 20
    ));
    let mut raw = server.raw().await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(redis.event_stream("OrderPlaced"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "nothing reached the server");
}
