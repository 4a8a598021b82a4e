//! Two services that only talk through a transport: `orders` sends the `Ship` command and
//! publishes `OrderPlaced`; `shipping` handles both. They run in one process here, as two
//! applications that share nothing but the transport, exactly as two processes would.
//!
//! ```text
//! cargo run --example two_services            # in-memory transport, no server needed
//! cargo run --example two_services -- nats    # NATS with JetStream at 127.0.0.1:4222
//! cargo run --example two_services -- redis   # Redis at 127.0.0.1:6379
//! ```
//!
//! The handlers and the calls are the same whichever transport is chosen: only the builder's
//! `.transport(…)` changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::transport::{MemoryTransport, Transport};

/// Ship an order; replies with the parcel's tracking number.
#[command(output = u64, name = "depot.ship", idempotent)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

/// Announced by `orders` once an order is placed.
#[event(name = "depot.order_placed")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("no courier can take order {0}")]
pub struct NoCourier(u64);

/// The error's code and details travel with it: a caller in another process reads the same
/// `code()` and `details()` as one in this process would.
impl ErrorCode for NoCourier {
    fn code(&self) -> &'static str {
        "depot.no_courier"
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "order": self.0 }))
    }
}

/// The shipping service: what it handles lives in this module, so its application keeps only
/// these handlers.
pub mod shipping {
    use super::*;

    /// Parcels prepared so far, counted once per order placed.
    #[derive(Default)]
    pub struct Depot {
        pub prepared: AtomicU64,
    }

    #[handler]
    impl Depot {
        async fn ship(&self, cmd: Ship) -> Result<u64, NoCourier> {
            if cmd.order == 13 {
                return Err(NoCourier(cmd.order));
            }
            Ok(1_000 + cmd.order)
        }

        async fn prepare(&self, event: &OrderPlaced) -> Result<(), NoCourier> {
            self.prepared.fetch_add(1, Ordering::SeqCst);
            println!("  [shipping] preparing a parcel for order {}", event.order);
            Ok(())
        }
    }
}

/// Both applications on `transport`: `shipping` serves, `orders` only sends and publishes.
async fn run(transport: impl Transport + Clone) -> Result<(), Box<dyn std::error::Error>> {
    let depot = std::sync::Arc::new(shipping::Depot::default());
    let shipping = Catga::builder()
        .transport(transport.clone())
        .service("shipping")
        .state_arc(depot.clone())
        .handlers(|h| h.name.contains("shipping::"))
        .build()?;
    let orders = Catga::builder()
        .transport(transport)
        .service("orders")
        .handlers(|_| false)
        .build()?;
    let serving = shipping.serve().await?;

    println!("send a command to the other service:");
    let tracking = orders.send(Ship { order: 7 }).await?;
    println!("  -> tracking number {tracking}");

    // Not the `NoCourier` value (a Rust type does not cross processes, so `downcast_ref`
    // finds it only where the handler ran), but everything a caller acts on: the same code,
    // details, retryability and validation field errors as if `shipping` ran in this process,
    // and which service failed.
    println!(
        "its handler's error comes back with the code, details and retryability it had there:"
    );
    let err = orders
        .send(Ship { order: 13 })
        .await
        .expect_err("order 13 has no courier");
    let service = err.remote().and_then(|failure| failure.service.as_deref());
    let details = err.details().map(ToString::to_string).unwrap_or_default();
    println!(
        "  -> code `{}`, retryable: {}, details {details}, failed in {}",
        err.code(),
        err.is_retryable(),
        service.unwrap_or("this process")
    );
    println!("  -> {err}");

    println!("publish an event; the shipping service handles it:");
    orders.publish(OrderPlaced { order: 7 }).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while depot.prepared.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  -> parcels prepared: {}",
        depot.prepared.load(Ordering::SeqCst)
    );

    // Stop taking messages; finish and acknowledge those in flight.
    serving.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let choice = std::env::args().nth(1).unwrap_or_default();
    match choice.as_str() {
        "nats" => {
            let nats = catga_nats::NatsTransport::connect("nats://127.0.0.1:4222")
                .prefix("example")
                .await?;
            println!("transport: NATS");
            run(nats).await
        }
        "redis" => {
            let redis = catga_redis::RedisTransport::connect("redis://127.0.0.1:6379")
                .prefix("example")
                .await?;
            println!("transport: Redis");
            run(redis).await
        }
        "" | "memory" => {
            println!("transport: in-memory");
            run(MemoryTransport::new()).await
        }
        other => Err(format!("unknown transport `{other}`: use nats, redis or memory").into()),
    }
}
