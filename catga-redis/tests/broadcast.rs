//! Every instance sees what invalidates its state (`p08_cache_multi_instance` on Redis): an
//! event a cached query is `invalidated_by` reaches every instance of the service, not only
//! the one its consumer group hands it to, whether or not the service handles the event.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use catga_core::behavior::Caching;
use catga_core::prelude::*;
use catga_redis::RedisTransport;
use common::{Server, consumer_names, eventually};

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

/// The stock both instances read (the database they share).
#[derive(Default)]
pub struct Stock {
    level: AtomicU64,
    adjusted: AtomicU32,
}

pub mod inventory {
    use super::*;

    #[handler]
    impl Stock {
        async fn stock(&self, _q: GetStock) -> Result<u64, Never> {
            Ok(self.level.load(Ordering::SeqCst))
        }

        async fn on_adjusted(&self, _event: &StockAdjusted) -> Result<(), Never> {
            self.adjusted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn instance(
    redis: &RedisTransport,
    stock: &Arc<Stock>,
    with_event_handler: bool,
) -> Catga<impl catga_core::Layer> {
    let keep: fn(&catga_core::HandlerMeta) -> bool = if with_event_handler {
        |h| h.name.starts_with("broadcast::inventory::")
    } else {
        |h| h.name == "broadcast::inventory::Stock::stock"
    };
    Catga::builder()
        .layer(Caching::new())
        .state_arc(stock.clone())
        .transport(redis.clone())
        .service("inventory")
        .handlers(keep)
        .build()
        .unwrap()
}

async fn every_instance_drops_its_cached_reply(test: &str, with_event_handler: bool) {
    let Some(server) = Server::get(test).await else {
        return;
    };
    let redis = server.transport().await;
    let stock = Arc::new(Stock::default());
    stock.level.store(1, Ordering::SeqCst);
    let (a, b) = (
        instance(&redis, &stock, with_event_handler),
        instance(&redis, &stock, with_event_handler),
    );
    let admin = Catga::builder()
        .transport(redis.clone())
        .service("admin")
        .handlers(|_| false)
        .build()
        .unwrap();
    let serving = [a.serve().await.unwrap(), b.serve().await.unwrap()];
    assert_eq!(a.send(GetStock { sku: 1 }).await.unwrap(), 1);
    assert_eq!(b.send(GetStock { sku: 1 }).await.unwrap(), 1);

    stock.level.store(2, Ordering::SeqCst);
    assert_eq!(
        a.send(GetStock { sku: 1 }).await.unwrap(),
        1,
        "cached until invalidated"
    );
    admin.publish(StockAdjusted { sku: 1 }).await.unwrap();
    eventually("both instances answer the new level", || async {
        a.send(GetStock { sku: 1 }).await.unwrap() == 2
            && b.send(GetStock { sku: 1 }).await.unwrap() == 2
    })
    .await;

    if with_event_handler {
        let mut raw = server.raw().await;
        let stream = redis.event_stream("inv.adjusted");
        eventually("the event is handled", || async {
            stock.adjusted.load(Ordering::SeqCst) >= 1
        })
        .await;
        assert_eq!(
            consumer_names(&mut raw, &stream, "inventory").await.len(),
            2,
            "both instances are consumers of the service's group"
        );
    }
    for s in serving {
        s.shutdown().await;
    }
    assert_eq!(
        stock.adjusted.load(Ordering::SeqCst),
        u32::from(with_event_handler),
        "the handler still runs once per service: the broadcast read only observes"
    );
}

#[tokio::test]
async fn every_instance_drops_its_cached_reply_without_a_handler_for_the_event() {
    every_instance_drops_its_cached_reply("broadcast-nohandler", false).await;
}

#[tokio::test]
async fn every_instance_drops_its_cached_reply_with_a_handler_for_the_event() {
    every_instance_drops_its_cached_reply("broadcast-handler", true).await;
}
