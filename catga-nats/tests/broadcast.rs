//! An instance that was disconnected may have missed an invalidation (p08 on NATS): the
//! observation is a plain subscription per instance, which keeps nothing across a lost
//! connection, so after reconnecting the instance drops what an event published meanwhile
//! might have invalidated. (Every instance dropping its cache when the event is published is
//! the conformance suite's `broadcast` family.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_core::testkit::{PATIENCE, eventually, unique};
use common::Corner;

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

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// The stock, as a database would hold it.
#[derive(Default)]
pub struct Stock {
    level: AtomicU64,
}

pub mod inventory {
    use super::*;

    #[handler]
    impl Stock {
        async fn get(&self, _query: GetStock) -> Result<u64, Never> {
            Ok(self.level.load(Ordering::SeqCst))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_instance_drops_what_it_may_have_missed() {
    let Some(corner) = Corner::new("broadcast_after_reconnection").await else {
        return;
    };
    let stock = Arc::new(Stock::default());
    stock.level.store(1, Ordering::SeqCst);
    let nats = corner.connect().await;
    let app = Catga::builder()
        .state_arc(stock.clone())
        .transport(nats.clone())
        .service(unique("inventory"))
        .handlers(|h| h.name.starts_with("broadcast::inventory::"))
        .layer(Caching::new())
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    assert_eq!(app.send(GetStock { sku: 1 }).await.unwrap(), 1);
    stock.level.store(2, Ordering::SeqCst);
    assert_eq!(app.send(GetStock { sku: 1 }).await.unwrap(), 1, "cached");
    // The connection drops (as when the server restarts); nothing was published.
    nats.client().force_reconnect().await.unwrap();
    eventually("the reconnection", || async {
        common::connects(&nats) == 2
    })
    .await;
    let fresh = tokio::time::timeout(PATIENCE, async {
        while app.send(GetStock { sku: 1 }).await.unwrap() != 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        fresh.is_ok(),
        "the cache was dropped after the reconnection"
    );
    serving.shutdown().await;
}
