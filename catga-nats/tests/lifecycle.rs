//! Stopped means stopped (p14c on NATS): once `Serving::shutdown()` returns, that instance
//! takes nothing more, events nor requests, and its pulls are gone from the server; the other
//! instance of the service handles everything.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE, eventually};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// What one instance handled.
#[derive(Default)]
pub struct Took {
    ticks: AtomicU64,
    pings: AtomicU64,
}

pub mod worker {
    use super::*;

    #[handler]
    impl Took {
        async fn tick(&self, _tick: &Tick) -> Result<(), Never> {
            self.ticks.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn ping(&self, ping: Ping) -> Result<u64, Never> {
            self.pings.fetch_add(1, Ordering::SeqCst);
            Ok(ping.n)
        }
    }
}

fn instance(nats: &NatsTransport, service: &str) -> (Catga, Arc<Took>) {
    let took = Arc::new(Took::default());
    let app = Catga::builder()
        .state_arc(took.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("lifecycle::worker::"))
        .build()
        .unwrap();
    (app, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_takes_nothing_more_and_the_other_takes_everything() {
    let Some(corner) = Corner::new("a_stopped_instance_takes_nothing").await else {
        return;
    };
    let service = common::unique("worker");
    let (stopping, stopped_took) = instance(&corner.connect().await, &service);
    let (staying, staying_took) = instance(&corner.connect().await, &service);
    let stopping = stopping.serve().await.unwrap();
    let staying_serving = staying.serve().await.unwrap();
    let publisher = Catga::builder()
        .transport(corner.connect().await)
        .handlers(|_| false)
        .request_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    // Both take a share first.
    for n in 0..40 {
        publisher.publish(Tick { n }).await.unwrap();
    }
    eventually("the first 40", PATIENCE, || {
        stopped_took.ticks.load(Ordering::SeqCst) + staying_took.ticks.load(Ordering::SeqCst) == 40
    })
    .await;

    stopping.shutdown().await;
    let (ticks_before, pings_before) = (
        stopped_took.ticks.load(Ordering::SeqCst),
        stopped_took.pings.load(Ordering::SeqCst),
    );
    let staying_before = staying_took.ticks.load(Ordering::SeqCst);
    const N: u64 = 100;
    for n in 0..N {
        publisher.publish(Tick { n }).await.unwrap();
    }
    for n in 0..N {
        assert_eq!(publisher.send(Ping { n }).await.unwrap(), n);
    }
    eventually(
        "all later events, by the instance still serving",
        PATIENCE,
        || staying_took.ticks.load(Ordering::SeqCst) == staying_before + N,
    )
    .await;
    // Give a straggler every chance to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stopped_took.ticks.load(Ordering::SeqCst),
        ticks_before,
        "no event after shutdown"
    );
    assert_eq!(
        stopped_took.pings.load(Ordering::SeqCst),
        pings_before,
        "no request after shutdown"
    );
    assert_eq!(staying_took.pings.load(Ordering::SeqCst), N);
    common::settled(
        &corner.connect().await,
        &service,
        "Tick",
        "everything acknowledged",
    )
    .await;
    staying_serving.shutdown().await;
}

/// After shutdown the server has no pull of the instance waiting: an event published then
/// stays pending for the service, delivered to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_leaves_no_pull_on_the_server() {
    let Some(corner) = Corner::new("a_stopped_instance_leaves_no_pull").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = common::unique("worker");
    let (app, took) = instance(&nats, &service);
    let serving = app.serve().await.unwrap();
    let waiting = tokio::time::timeout(PATIENCE, async {
        loop {
            let info = common::consumer_info(&nats, &service, "Tick")
                .await
                .unwrap();
            if info.num_waiting > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waiting.is_ok(), "the instance pulls while serving");
    serving.shutdown().await;
    let info = common::consumer_info(&nats, &service, "Tick")
        .await
        .unwrap();
    assert_eq!(
        info.num_waiting, 0,
        "no pull left on the server after shutdown"
    );
    app.publish(Tick { n: 1 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = common::consumer_info(&nats, &service, "Tick")
        .await
        .unwrap();
    assert_eq!(
        (info.num_pending, info.num_ack_pending),
        (1, 0),
        "the event waits for the service, delivered to nobody"
    );
    assert_eq!(took.ticks.load(Ordering::SeqCst), 0);
}
