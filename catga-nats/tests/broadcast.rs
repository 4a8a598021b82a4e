//! Every instance sees what invalidates its state (p08 on NATS): two instances of a service
//! cache a query that an event invalidates; a third application publishes the event; both
//! instances answer fresh, whether or not the service handles the event itself (its handler
//! runs on one instance only: the queue group; the invalidation reaches both: a subscription
//! per instance). An instance that was disconnected drops what an event published meanwhile
//! might have invalidated.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE};

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

/// The stock, as a database both instances read would hold it.
#[derive(Default)]
pub struct Stock {
    level: AtomicU64,
    adjustments: AtomicU64,
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

pub mod adjustments {
    use super::*;

    #[handler]
    impl Stock {
        async fn adjusted(&self, _event: &StockAdjusted) -> Result<(), Never> {
            self.adjustments.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn instance(
    nats: &NatsTransport,
    service: &str,
    stock: &Arc<Stock>,
    with_handler: bool,
) -> Catga<impl catga_core::Layer> {
    Catga::builder()
        .state_arc(stock.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(if with_handler {
            |h| h.name.starts_with("broadcast::")
        } else {
            |h| h.name.starts_with("broadcast::inventory::")
        })
        .layer(Caching::new())
        .build()
        .unwrap()
}

async fn both_instances_answer_fresh_after_a_third_app_publishes(test: &str, with_handler: bool) {
    let Some(corner) = Corner::new(test).await else {
        return;
    };
    let service = common::unique("inventory");
    let stock = Arc::new(Stock::default());
    stock.level.store(1, Ordering::SeqCst);
    let a = instance(&corner.connect().await, &service, &stock, with_handler);
    let b = instance(&corner.connect().await, &service, &stock, with_handler);
    let serving = [a.serve().await.unwrap(), b.serve().await.unwrap()];
    let admin = Catga::builder()
        .transport(corner.connect().await)
        .service(common::unique("admin"))
        .handlers(|_| false)
        .build()
        .unwrap();

    for round in 2..5u64 {
        let cached = (
            a.send(GetStock { sku: 1 }).await.unwrap(),
            b.send(GetStock { sku: 1 }).await.unwrap(),
        );
        assert_eq!(cached, (round - 1, round - 1), "both cached the level");
        stock.level.store(round, Ordering::SeqCst);
        assert_eq!(
            a.send(GetStock { sku: 1 }).await.unwrap(),
            round - 1,
            "served from the cache until invalidated"
        );
        admin.publish(StockAdjusted { sku: 1 }).await.unwrap();
        let fresh = tokio::time::timeout(PATIENCE, async {
            loop {
                let answers = (
                    a.send(GetStock { sku: 1 }).await.unwrap(),
                    b.send(GetStock { sku: 1 }).await.unwrap(),
                );
                if answers == (round, round) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(fresh.is_ok(), "round {round}: both instances answer fresh");
    }
    if with_handler {
        common::eventually("each adjustment handled once", PATIENCE, || {
            stock.adjustments.load(Ordering::SeqCst) == 3
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            stock.adjustments.load(Ordering::SeqCst),
            3,
            "the handler ran on one instance per event; only the invalidation reached both"
        );
    }
    for serving in serving {
        serving.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_drops_its_cache_when_the_service_does_not_handle_the_event() {
    both_instances_answer_fresh_after_a_third_app_publishes("broadcast_without_handler", false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_drops_its_cache_when_the_service_handles_the_event() {
    both_instances_answer_fresh_after_a_third_app_publishes("broadcast_with_handler", true).await;
}

/// An instance that was disconnected may have missed an invalidation: after reconnecting it
/// drops what the event invalidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_instance_drops_what_it_may_have_missed() {
    let Some(corner) = Corner::new("broadcast_after_reconnection").await else {
        return;
    };
    let stock = Arc::new(Stock::default());
    stock.level.store(1, Ordering::SeqCst);
    let nats = corner.connect().await;
    let app = instance(&nats, &common::unique("inventory"), &stock, false);
    let serving = app.serve().await.unwrap();
    assert_eq!(app.send(GetStock { sku: 1 }).await.unwrap(), 1);
    stock.level.store(2, Ordering::SeqCst);
    assert_eq!(app.send(GetStock { sku: 1 }).await.unwrap(), 1, "cached");
    // The connection drops (as when the server restarts); nothing was published.
    nats.client().force_reconnect().await.unwrap();
    common::eventually("the reconnection", PATIENCE, || {
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
