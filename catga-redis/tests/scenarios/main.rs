//! The transport scenarios of `catga-core/tests/transport.rs`, against a real Redis server and
//! through the public catga API: routing, replies, typed errors across the wire, events to
//! every service, shared load, deadlines, bad input, draining, claiming what a dead instance
//! left behind. Each test has its own key prefix, so they run in parallel.

#[path = "../common/mod.rs"]
mod common;

mod events;
mod requests;
mod wire;

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
