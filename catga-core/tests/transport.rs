//! Two services on one in-memory transport: routing, replies, errors across the wire, events
//! to every service, shared load, bad input, draining. The NATS and Redis transports run the
//! same kind of scenarios against real servers in their own crates.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::transport::{MemoryTransport, Transport, TransportError};
use catga_core::{ErrorKind, MessageKind, WireFormat};

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

#[derive(Debug, thiserror::Error)]
#[error("no courier for order {0}")]
pub struct NoCourier(u64);

/// Which instance handled what (state is registered per app instance).
#[derive(Default)]
pub struct Seen {
    instance: String,
    shipped: Mutex<Vec<u64>>,
    placed: Mutex<Vec<u64>>,
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn ship(&self, cmd: Ship) -> Result<u64, NoCourier> {
            tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
            if cmd.fail {
                return Err(NoCourier(cmd.order));
            }
            self.shipped
                .lock()
                .map_err(|_| NoCourier(0))?
                .push(cmd.order);
            Ok(cmd.order * 10)
        }

        async fn who(&self, _q: WhoAmI) -> Result<String, NoCourier> {
            Ok(self.instance.clone())
        }

        async fn placed(&self, event: &OrderPlaced) -> Result<(), NoCourier> {
            self.placed
                .lock()
                .map_err(|_| NoCourier(0))?
                .push(event.order);
            Ok(())
        }
    }
}

pub mod billing {
    use super::*;

    pub static BILLED: AtomicU32 = AtomicU32::new(0);

    #[handler]
    async fn bill(_event: &OrderPlaced) -> Result<(), NoCourier> {
        BILLED.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn shipping_instance(bus: &MemoryTransport, name: &str) -> (Catga, std::sync::Arc<Seen>) {
    let seen = std::sync::Arc::new(Seen {
        instance: name.to_string(),
        ..Seen::default()
    });
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(bus.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("transport::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

/// A service with no handler for `Ship`: its sends go over the transport.
fn orders(bus: &MemoryTransport) -> Catga {
    Catga::builder()
        .transport(bus.clone())
        .service("orders")
        .handlers(|h| h.name.starts_with("transport::billing::"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_request_without_a_local_handler_goes_to_the_service_that_has_one() {
    let bus = MemoryTransport::new();
    let (shipping, seen) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    let orders = orders(&bus);
    let reply = orders
        .send(Ship {
            order: 4,
            fail: false,
            millis: 0,
        })
        .await
        .unwrap();
    assert_eq!(reply, 40);
    assert_eq!(*seen.shipped.lock().unwrap(), vec![4]);
    serving.shutdown().await;
}

#[tokio::test]
async fn a_handler_error_comes_back_typed_not_as_a_timeout() {
    let bus = MemoryTransport::new();
    let (shipping, _) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    let err = orders(&bus)
        .send(Ship {
            order: 9,
            fail: true,
            millis: 0,
        })
        .await
        .unwrap_err();
    let ErrorKind::Remote { failure, .. } = err.kind() else {
        panic!("unexpected {err:?}");
    };
    assert!(
        failure.message.contains("no courier for order 9"),
        "{failure:?}"
    );
    assert_eq!(err.code(), "handler", "the code it had where it failed");
    assert!(!err.is_retryable());
    serving.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_travels_and_expires() {
    let bus = MemoryTransport::new();
    let (shipping, _) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    let ctx = Context::new().with_timeout(Duration::from_millis(100));
    let err = orders(&bus)
        .send_with(
            Ship {
                order: 1,
                fail: false,
                millis: 5_000,
            },
            ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout");
    serving.shutdown().await;
}

#[tokio::test]
async fn with_nobody_serving_a_request_fails_fast() {
    let bus = MemoryTransport::new();
    let err = orders(&bus)
        .send(Ship {
            order: 1,
            fail: false,
            millis: 0,
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err.kind(),
        ErrorKind::Transport { source: TransportError::NoResponders(name), .. } if name == "Ship"
    ));
    assert!(err.is_retryable(), "a service may come up");
}

#[tokio::test]
async fn an_event_reaches_every_service_once_and_instances_share_requests() {
    let bus = MemoryTransport::new();
    let instances: Vec<_> = ["s1", "s2", "s3"]
        .iter()
        .map(|n| shipping_instance(&bus, n))
        .collect();
    let mut serving = Vec::new();
    for (app, _) in &instances {
        serving.push(app.serve().await.unwrap());
    }
    let orders = orders(&bus);
    serving.push(orders.serve().await.unwrap());

    billing::BILLED.store(0, Ordering::SeqCst);
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
    // Events are delivered asynchronously: wait until all arrived.
    for _ in 0..200 {
        let placed: usize = instances
            .iter()
            .map(|(_, s)| s.placed.lock().unwrap().len())
            .sum();
        if placed == 30 && billing::BILLED.load(Ordering::SeqCst) == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut placed: Vec<u64> = instances
        .iter()
        .flat_map(|(_, s)| s.placed.lock().unwrap().clone())
        .collect();
    placed.sort_unstable();
    assert_eq!(
        placed,
        (0..30).collect::<Vec<_>>(),
        "shipping handled each event once"
    );
    assert_eq!(
        billing::BILLED.load(Ordering::SeqCst),
        30,
        "and billing, another service, too"
    );

    let shares: Vec<usize> = instances
        .iter()
        .map(|(_, s)| s.shipped.lock().unwrap().len())
        .collect();
    assert_eq!(shares.iter().sum::<usize>(), 30);
    assert!(
        shares.iter().all(|&n| n > 0),
        "every instance took a share: {shares:?}"
    );
    let mut shipped: Vec<u64> = instances
        .iter()
        .flat_map(|(_, s)| s.shipped.lock().unwrap().clone())
        .collect();
    shipped.sort_unstable();
    shipped.dedup();
    assert_eq!(shipped.len(), 30, "none twice");
    for s in serving {
        s.shutdown().await;
    }
}

#[tokio::test]
async fn unreadable_messages_are_kept_and_the_consumer_goes_on() {
    let bus = MemoryTransport::new();
    let rejects = MemoryDeadLetterStore::new();
    let seen = std::sync::Arc::new(Seen::default());
    let shipping = Catga::builder()
        .state_arc(seen.clone())
        .transport(bus.clone())
        .service("shipping")
        .handlers(|h| h.name.starts_with("transport::shipping::"))
        .dead_letters(rejects.clone())
        .build()
        .unwrap();
    let serving = shipping.serve().await.unwrap();
    let garbage = Envelope::with_payload(
        "OrderPlaced",
        MessageKind::Event,
        &Context::new(),
        WireFormat::Json,
        b"{not json".to_vec(),
    );
    bus.publish(garbage).await.unwrap();
    orders(&bus)
        .publish(OrderPlaced { order: 7 })
        .await
        .unwrap();
    for _ in 0..200 {
        if !seen.placed.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*seen.placed.lock().unwrap(), vec![7]);
    let kept = rejects.list(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].code, "codec");
    assert_eq!(kept[0].payload.as_deref(), Some(&b"{not json"[..]));
    serving.shutdown().await;
}

#[tokio::test]
async fn shutdown_waits_for_messages_in_flight() {
    let bus = MemoryTransport::new();
    let (shipping, seen) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    let orders = orders(&bus);
    let call = tokio::spawn(async move {
        orders
            .send(Ship {
                order: 3,
                fail: false,
                millis: 200,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    serving.shutdown().await; // returns only once the in-flight `Ship` finished
    assert_eq!(*seen.shipped.lock().unwrap(), vec![3]);
    assert_eq!(call.await.unwrap().unwrap(), 30);
}

#[tokio::test]
async fn messagepack_envelopes_round_trip() {
    let bus = MemoryTransport::new();
    let (shipping, _) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    let orders = Catga::builder()
        .transport(bus.clone())
        .wire_format(WireFormat::MessagePack)
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(orders.send(WhoAmI).await.unwrap(), "s1");
    serving.shutdown().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_by_the_transport() {
    let bus = MemoryTransport::new();
    let big = Envelope::with_payload(
        "OrderPlaced",
        MessageKind::Event,
        &Context::new(),
        WireFormat::Json,
        vec![b' '; 2 << 20],
    );
    assert!(matches!(
        bus.publish(big).await,
        Err(TransportError::TooLarge { limit, .. }) if limit == 1 << 20
    ));
}

#[tokio::test]
async fn a_reply_over_the_callers_payload_limit_is_refused_not_decoded() {
    let bus = MemoryTransport::new();
    let (shipping, _) = shipping_instance(&bus, &"s".repeat(4096));
    let serving = shipping.serve().await.unwrap();
    let caller = Catga::builder()
        .transport(bus.clone())
        .handlers(|_| false)
        .max_payload_bytes(1024)
        .build()
        .unwrap();
    let err = caller.send(WhoAmI).await.unwrap_err();
    assert_eq!(err.code(), "codec");
    assert!(
        err.to_string().contains("exceeds the limit of 1024 bytes"),
        "{err}"
    );
    serving.shutdown().await;
}

#[tokio::test]
async fn a_transport_chosen_at_run_time_can_be_boxed_or_shared() {
    let bus = MemoryTransport::new();
    let boxed: Box<dyn Transport> = Box::new(bus.clone());
    let shared: std::sync::Arc<dyn Transport> = std::sync::Arc::new(bus.clone());
    let (shipping, _) = shipping_instance(&bus, "s1");
    let serving = shipping.serve().await.unwrap();
    for transport in [boxed, Box::new(shared)] {
        let caller = Catga::builder()
            .transport(transport)
            .handlers(|_| false)
            .build()
            .unwrap();
        assert_eq!(caller.send(WhoAmI).await.unwrap(), "s1");
    }
    serving.shutdown().await;
}
