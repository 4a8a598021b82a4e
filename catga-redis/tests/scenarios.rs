//! The transport scenarios of `catga-core/tests/transport.rs`, against a real Redis server and
//! through the public catga API: routing, replies, typed errors across the wire, events to
//! every service, shared load, deadlines, bad input, draining, claiming what a dead instance
//! left behind. Each test has its own key prefix, so they run in parallel.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::transport::{Transport, TransportError};
use catga_core::{MessageKind, WireFormat};
use catga_redis::RedisTransport;
use common::{Server, eventually, pending};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
    pub fail: bool,
    pub millis: u64,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

#[query(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI;

/// Answers with the `traceparent` its handler saw.
#[query(output = Option<String>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TraceOf;

/// Fails (retryably) until it has been handled `succeed_on` times.
#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flaky {
    pub succeed_on: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("no courier for order {0}")]
    NoCourier(u64),
    #[error("the courier service is down")]
    Down,
}

impl Retryable for ShipError {
    fn is_retryable(&self) -> bool {
        matches!(self, ShipError::Down)
    }
}

/// What one instance handled (state is registered per application).
#[derive(Default)]
pub struct Seen {
    instance: String,
    shipped: Mutex<Vec<u64>>,
    placed: Mutex<Vec<u64>>,
    placed_traces: Mutex<Vec<Option<String>>>,
    flaky_attempts: AtomicU32,
}

impl Seen {
    fn shipped(&self) -> Vec<u64> {
        self.shipped.lock().unwrap().clone()
    }

    fn placed(&self) -> Vec<u64> {
        self.placed.lock().unwrap().clone()
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn ship(&self, cmd: Ship) -> Result<u64, ShipError> {
            tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
            if cmd.fail {
                return Err(ShipError::NoCourier(cmd.order));
            }
            self.shipped
                .lock()
                .map_err(|_| ShipError::Down)?
                .push(cmd.order);
            Ok(cmd.order * 10)
        }

        async fn who(&self, _q: WhoAmI) -> Result<String, ShipError> {
            Ok(self.instance.clone())
        }

        async fn trace_of(&self, _q: TraceOf, ctx: &Context) -> Result<Option<String>, ShipError> {
            Ok(ctx.header("traceparent").map(str::to_string))
        }

        async fn on_placed(&self, event: &OrderPlaced, ctx: &Context) -> Result<(), ShipError> {
            self.placed
                .lock()
                .map_err(|_| ShipError::Down)?
                .push(event.order);
            self.placed_traces
                .lock()
                .map_err(|_| ShipError::Down)?
                .push(ctx.header("traceparent").map(str::to_string));
            Ok(())
        }

        async fn flaky(&self, event: &Flaky) -> Result<(), ShipError> {
            let attempt = self.flaky_attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if attempt < event.succeed_on {
                return Err(ShipError::Down);
            }
            Ok(())
        }
    }
}

/// Another service that handles `OrderPlaced`.
#[derive(Default)]
pub struct Billing {
    billed: AtomicU32,
}

pub mod billing {
    use super::*;

    #[handler]
    impl Billing {
        async fn bill(&self, _event: &OrderPlaced) -> Result<(), ShipError> {
            self.billed.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn shipping_instance(redis: &RedisTransport, name: &str) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen {
        instance: name.to_string(),
        ..Seen::default()
    });
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(redis.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("scenarios::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

/// A service without a handler for `Ship`: its sends go over Redis. It bills orders.
fn orders(redis: &RedisTransport) -> (Catga, Arc<Billing>) {
    let billing = Arc::new(Billing::default());
    let app = Catga::builder()
        .state_arc(billing.clone())
        .transport(redis.clone())
        .service("orders")
        .handlers(|h| h.name.starts_with("scenarios::billing::"))
        .build()
        .unwrap();
    (app, billing)
}

fn ship(order: u64) -> Ship {
    Ship {
        order,
        fail: false,
        millis: 0,
    }
}

#[tokio::test]
async fn a_request_without_a_local_handler_goes_to_the_service_that_has_one() {
    let Some(server) = Server::get("request").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&server.transport().await);
    assert_eq!(orders.send(ship(4)).await.unwrap(), 40);
    assert_eq!(orders.send(ship(5)).await.unwrap(), 50);
    assert_eq!(seen.shipped(), vec![4, 5]);
    serving.shutdown().await;

    let mut raw = server.raw().await;
    let left: u64 = redis::cmd("XLEN")
        .arg(redis.request_stream("Ship"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(left, 0, "an answered request is deleted from its stream");
}

#[tokio::test]
async fn a_handler_error_comes_back_typed_not_as_a_timeout() {
    let Some(server) = Server::get("error").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let err = orders(&redis)
        .0
        .send(Ship {
            order: 9,
            fail: true,
            millis: 0,
        })
        .await
        .unwrap_err();
    let ErrorKind::Remote {
        remote_code,
        detail,
        retryable,
        ..
    } = err.kind()
    else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(remote_code, "handler");
    assert!(detail.contains("no courier for order 9"), "{detail}");
    assert!(!retryable);
    assert_eq!(err.code(), "remote");
    serving.shutdown().await;
}

#[tokio::test]
async fn the_callers_deadline_travels_and_an_expired_request_is_not_handled() {
    let Some(server) = Server::get("deadline").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);

    // The handler would outlive the caller's deadline: the caller gets a timeout.
    let ctx = Context::new().with_timeout(Duration::from_millis(200));
    let slow = Ship {
        order: 1,
        fail: false,
        millis: 1_000,
    };
    let err = orders.send_with(slow, ctx).await.unwrap_err();
    assert_eq!(err.code(), "timeout", "{err:?}");

    // A request whose deadline passed before any instance took it is not handled.
    let ctx = Context::new().with_timeout(Duration::from_millis(1));
    let payload = serde_json::to_vec(&ship(2)).unwrap();
    let stale = Envelope::with_payload(
        "Ship",
        MessageKind::Command,
        &ctx,
        WireFormat::Json,
        payload,
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(stale.expired());
    let late = redis.request(stale, Duration::from_millis(300)).await;
    assert!(matches!(late, Err(TransportError::Timeout(_))), "{late:?}");
    assert_eq!(orders.send(ship(3)).await.unwrap(), 30);
    serving.shutdown().await;
    assert_eq!(
        seen.shipped(),
        vec![3],
        "the slow one was cut off at the caller's deadline (it travelled with the request), \
         and the expired one never ran"
    );
}

#[tokio::test]
async fn with_nobody_serving_a_request_fails_fast() {
    let Some(server) = Server::get("noresponders").await else {
        return;
    };
    let redis = server.transport().await;
    let (orders, _) = orders(&redis);
    let no_responders = |err: &Error| {
        matches!(
            err.kind(),
            ErrorKind::Transport { source: TransportError::NoResponders(name), .. } if name == "Ship"
        )
    };
    let err = orders.send(ship(1)).await.unwrap_err();
    assert!(no_responders(&err), "{err:?}");
    assert!(err.is_retryable(), "a service may come up");

    // Once the last instance has shut down, nobody serves it again.
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    assert_eq!(orders.send(ship(2)).await.unwrap(), 20);
    serving.shutdown().await;
    let err = orders.send(ship(3)).await.unwrap_err();
    assert!(no_responders(&err), "{err:?}");
}

#[tokio::test]
async fn an_event_reaches_every_service_once_and_instances_share_the_load() {
    let Some(server) = Server::get("sharing").await else {
        return;
    };
    let redis = server.transport().await;
    let instances: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| shipping_instance(&redis, n))
        .collect();
    let mut serving = Vec::new();
    for (app, _) in &instances {
        serving.push(app.serve().await.unwrap());
    }
    let (orders, billing) = orders(&redis);
    serving.push(orders.serve().await.unwrap());

    for order in 0..30 {
        orders.publish(OrderPlaced { order }).await.unwrap();
    }
    for order in 0..30 {
        orders
            .send(Ship {
                order,
                fail: false,
                millis: 1,
            })
            .await
            .unwrap();
    }
    let placed_total = || {
        instances
            .iter()
            .map(|(_, s)| s.placed().len())
            .sum::<usize>()
    };
    eventually("every event reached both services", || async {
        placed_total() >= 30 && billing.billed.load(Ordering::SeqCst) >= 30
    })
    .await;
    for s in serving {
        s.shutdown().await;
    }

    let mut placed: Vec<u64> = instances.iter().flat_map(|(_, s)| s.placed()).collect();
    placed.sort_unstable();
    assert_eq!(
        placed,
        (0..30).collect::<Vec<_>>(),
        "shipping handled each event once"
    );
    assert_eq!(
        billing.billed.load(Ordering::SeqCst),
        30,
        "and billing, another service, too"
    );
    let event_shares: Vec<usize> = instances.iter().map(|(_, s)| s.placed().len()).collect();
    assert!(
        event_shares.iter().all(|&n| n > 0),
        "every instance took a share of the events: {event_shares:?}"
    );

    let shares: Vec<usize> = instances.iter().map(|(_, s)| s.shipped().len()).collect();
    assert!(
        shares.iter().all(|&n| n > 0),
        "every instance took a share of the requests: {shares:?}"
    );
    let mut shipped: Vec<u64> = instances.iter().flat_map(|(_, s)| s.shipped()).collect();
    shipped.sort_unstable();
    assert_eq!(
        shipped,
        (0..30).collect::<Vec<_>>(),
        "each once, none twice"
    );
}

#[tokio::test]
async fn unreadable_entries_are_kept_and_the_consumer_goes_on() {
    let Some(server) = Server::get("malformed").await else {
        return;
    };
    let redis = server.transport().await;
    let rejects = MemoryDeadLetterStore::new();
    let seen = Arc::new(Seen::default());
    let shipping = Catga::builder()
        .state_arc(seen.clone())
        .transport(redis.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("scenarios::shipping::"))
        .dead_letters(rejects.clone())
        .build()
        .unwrap();
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
        .0
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
async fn entries_a_dead_instance_read_are_claimed_and_handled_by_another() {
    let Some(server) = Server::get("claim").await else {
        return;
    };
    let redis = server
        .builder()
        .claim_idle(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
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
    let (orders, _) = orders(&redis);
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

    let (shipping, seen) = shipping_instance(&redis, "survivor");
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
    let mut placed = seen.placed();
    placed.sort_unstable();
    assert_eq!(placed, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_retryable_failure_is_delivered_again_at_most_max_deliveries_times() {
    let Some(server) = Server::get("redeliver").await else {
        return;
    };
    let redis = server.builder().max_deliveries(3).build().await.unwrap();
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);

    // Succeeds on its second delivery.
    orders.publish(Flaky { succeed_on: 2 }).await.unwrap();
    eventually("the second delivery succeeds", || async {
        seen.flaky_attempts.load(Ordering::SeqCst) >= 2
    })
    .await;
    let raw = server.raw().await;
    let stream = redis.event_stream("Flaky");
    eventually("and it is acknowledged", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;

    // Never succeeds: three deliveries, then it is acknowledged and left to the dead letters.
    seen.flaky_attempts.store(0, Ordering::SeqCst);
    orders.publish(Flaky { succeed_on: 100 }).await.unwrap();
    eventually("three deliveries", || async {
        seen.flaky_attempts.load(Ordering::SeqCst) >= 3
    })
    .await;
    eventually("then it is acknowledged", || async {
        pending(&mut raw.clone(), &stream, "shipping").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(seen.flaky_attempts.load(Ordering::SeqCst), 3, "no fourth");
}

#[tokio::test]
async fn the_trace_context_travels_with_requests_and_events() {
    let Some(server) = Server::get("trace").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ctx = || Context::new().with_header("traceparent", traceparent);
    let seen_by_handler = orders.send_with(TraceOf, ctx()).await.unwrap();
    assert_eq!(seen_by_handler.as_deref(), Some(traceparent));

    orders
        .publish_with(OrderPlaced { order: 1 }, ctx())
        .await
        .unwrap();
    eventually("the event arrives", || async { !seen.placed().is_empty() }).await;
    serving.shutdown().await;
    assert_eq!(
        *seen.placed_traces.lock().unwrap(),
        vec![Some(traceparent.to_string())]
    );
}

#[tokio::test]
async fn shutdown_waits_for_messages_in_flight() {
    let Some(server) = Server::get("drain").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, seen) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let (orders, _) = orders(&redis);
    let call = tokio::spawn(async move {
        orders
            .send(Ship {
                order: 3,
                fail: false,
                millis: 300,
            })
            .await
    });
    eventually("the request is being handled", || async {
        let mut raw = server.raw().await;
        pending(&mut raw, &redis.request_stream("Ship"), "shipping").await == 1
    })
    .await;
    serving.shutdown().await; // returns only once the in-flight `Ship` finished and was answered
    assert_eq!(seen.shipped(), vec![3]);
    assert_eq!(call.await.unwrap().unwrap(), 30);
}

#[tokio::test]
async fn messagepack_envelopes_round_trip() {
    let Some(server) = Server::get("msgpack").await else {
        return;
    };
    let redis = server.transport().await;
    let (shipping, _) = shipping_instance(&redis, "s1");
    let serving = shipping.serve().await.unwrap();
    let orders = Catga::builder()
        .transport(redis.clone())
        .wire_format(WireFormat::MessagePack)
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(orders.send(WhoAmI).await.unwrap(), "s1");
    serving.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_it_is_sent() {
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
        redis.publish(big.clone()).await,
        Err(TransportError::TooLarge { limit, .. }) if limit == 1 << 20
    ));
    let request = Envelope {
        kind: MessageKind::Command,
        name: "Ship".into(),
        ..big
    };
    assert!(matches!(
        redis.request(request, Duration::from_secs(1)).await,
        Err(TransportError::TooLarge { .. })
    ));
    let mut raw = server.raw().await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(redis.event_stream("OrderPlaced"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "nothing reached the server");
}
