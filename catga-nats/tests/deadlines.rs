//! An event is a fact, not a request: a publisher's deadline bounds the publisher, not the
//! subscribers (rel_r4 on NATS). Events published with a deadline, and events a request
//! handler queued with `ctx.publish` while its caller's timeout ran, are all handled after a
//! consumer outage longer than that deadline; none is acknowledged unhandled or set aside.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::behavior::DeadLetter;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use common::{Corner, PATIENCE, eventually};

const DEADLINE: Duration = Duration::from_secs(1);

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub order: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Default)]
pub struct Shipments(AtomicU64);

pub mod orders {
    use super::*;

    #[handler]
    async fn ship(cmd: Ship, ctx: &Context) -> Result<u64, Never> {
        ctx.publish(Shipped { order: cmd.order })
            .map_err(|_| Never)?;
        Ok(cmd.order)
    }
}

pub mod shipping {
    use super::*;

    #[handler]
    async fn shipped(_event: &Shipped, done: &Shipments) -> Result<(), Never> {
        // A database write.
        tokio::time::sleep(Duration::from_millis(5)).await;
        done.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outlive_their_publishers_deadline() {
    let Some(corner) = Corner::new("events_outlive_their_publishers_deadline").await else {
        return;
    };
    let letters = MemoryDeadLetterStore::new();
    let done = Arc::new(Shipments::default());
    let shipping = Catga::builder()
        .state_arc(done.clone())
        .transport(corner.connect().await)
        .service(common::unique("shipping"))
        .handlers(|h| h.name.starts_with("deadlines::shipping::"))
        .layer(DeadLetter::new(letters.clone()))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    // The durable consumer exists; the service is down (a deploy).
    shipping.serve().await.unwrap().shutdown().await;

    let orders = Catga::builder()
        .transport(corner.connect().await)
        .service(common::unique("orders"))
        .handlers(|h| h.name.starts_with("deadlines::orders::"))
        .build()
        .unwrap();
    let orders_serving = orders.serve().await.unwrap();
    let caller = Catga::builder()
        .transport(corner.connect().await)
        .handlers(|_| false)
        .request_timeout(DEADLINE)
        .build()
        .unwrap();
    for order in 0..20 {
        orders
            .publish_with(Shipped { order }, Context::new().with_timeout(DEADLINE))
            .await
            .unwrap();
    }
    // Through a remote command whose caller set a timeout: `ctx.publish` inside it.
    for order in 20..40 {
        assert_eq!(caller.send(Ship { order }).await.unwrap(), order);
    }
    // The outage outlasts every deadline.
    tokio::time::sleep(DEADLINE * 2).await;
    let serving = shipping.serve().await.unwrap();
    eventually("all 40 events handled", PATIENCE, || {
        done.0.load(Ordering::SeqCst) >= 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(done.0.load(Ordering::SeqCst), 40);
    assert_eq!(letters.count().await.unwrap(), 0, "none set aside");
    serving.shutdown().await;
    orders_serving.shutdown().await;
}
