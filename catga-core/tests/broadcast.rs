//! Every instance of a service sees what invalidates its state: a cached query's replies are
//! dropped on every instance when an event named in its `invalidated_by` is published
//! anywhere on the transport, whether or not the service handles that event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::HandlerMeta;
use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_core::transport::MemoryTransport;

#[derive(Debug, thiserror::Error)]
#[error("x")]
pub struct X;

#[event(name = "inv.adjusted")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StockAdjusted {
    pub sku: u64,
}

#[query(output = u64, cache_ttl = "30s", invalidated_by(StockAdjusted), name = "inv.get")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetStock {
    pub sku: u64,
}

/// The stock level the handler reads (shared by the instances, like a database).
#[derive(Default)]
pub struct Stock(AtomicU64);

pub mod inventory {
    use super::*;

    #[handler]
    async fn stock(_q: GetStock, stock: &Stock) -> Result<u64, X> {
        Ok(stock.0.load(Ordering::SeqCst))
    }

    #[handler]
    async fn on_adjusted(_e: &StockAdjusted) -> Result<(), X> {
        Ok(())
    }
}

async fn scenario(with_event_handler: bool) {
    let bus = MemoryTransport::new();
    let stock = Arc::new(Stock::default());
    let keep: fn(&HandlerMeta) -> bool = if with_event_handler {
        |h| h.name.starts_with("broadcast::inventory::")
    } else {
        |h| h.name == "broadcast::inventory::stock"
    };
    let instance = || {
        Catga::builder()
            .state_arc(stock.clone())
            .transport(bus.clone())
            .service("inventory")
            .handlers(keep)
            .layer(Caching::new())
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let admin = Catga::builder()
        .transport(bus.clone())
        .service("admin")
        .handlers(|_| false)
        .build()
        .unwrap();
    let (sa, sb) = (a.serve().await.unwrap(), b.serve().await.unwrap());
    stock.0.store(1, Ordering::SeqCst);
    assert_eq!(a.send(GetStock { sku: 1 }).await.unwrap(), 1);
    assert_eq!(b.send(GetStock { sku: 1 }).await.unwrap(), 1);
    stock.0.store(2, Ordering::SeqCst);
    admin.publish(StockAdjusted { sku: 1 }).await.unwrap();
    let mut answers = (0, 0);
    for _ in 0..200 {
        answers = (
            a.send(GetStock { sku: 1 }).await.unwrap(),
            b.send(GetStock { sku: 1 }).await.unwrap(),
        );
        if answers == (2, 2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        answers,
        (2, 2),
        "both instances dropped their cached reply (service handles the event: {with_event_handler})"
    );
    sa.shutdown().await;
    sb.shutdown().await;
}

#[tokio::test]
async fn every_instance_drops_its_cache_when_the_service_handles_the_event() {
    scenario(true).await;
}

#[tokio::test]
async fn every_instance_drops_its_cache_when_the_service_does_not_handle_the_event() {
    scenario(false).await;
}
