//! The consumer lag gauges: events published while no instance serves, then served by an
//! instance whose handlers wait, are reported as not yet delivered and delivered but not
//! acknowledged; once handled, both gauges are 0.
//!
//! One test per binary: the recorder is installed globally, and a snapshot resets what it read.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit::{eventually, fresh_gauges, install_gauge_recorder, unique};
use catga_nats::{CONSUMER_ACK_PENDING, CONSUMER_PENDING};
use common::Corner;
use tokio::sync::Semaphore;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    pub n: u32,
}

/// Handlers wait for the gate; `handled` counts those that got through.
pub struct Lagging {
    gate: Semaphore,
    handled: AtomicU32,
}

pub mod lagging {
    use super::*;

    #[handler]
    impl Lagging {
        async fn tick(&self, _tick: &Tick) -> Result<(), BoxError> {
            drop(self.gate.acquire().await?);
            self.handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// The lag gauges of `service`'s consumer of `event` (pending, ack pending), if the instance
/// set both since the last call (see `fresh_gauges`).
fn sampled(service: &str, event: &str) -> Option<(f64, f64)> {
    let labels = [
        ("messaging_system", "nats"),
        ("messaging_consumer_group_name", service),
        ("messaging_destination_name", event),
    ];
    fresh_gauges([CONSUMER_PENDING, CONSUMER_ACK_PENDING], &labels)
        .map(|[pending, ack_pending]| (pending, ack_pending))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_reports_its_backlog_and_zero_once_it_caught_up() {
    install_gauge_recorder();
    let Some(corner) = Corner::new("consumer_metrics").await else {
        return;
    };
    let nats = corner.connect().await;
    let service = unique("lagging");
    let state = Arc::new(Lagging {
        gate: Semaphore::new(0),
        handled: AtomicU32::new(0),
    });
    let app = Catga::builder()
        .state_arc(Arc::clone(&state))
        .transport(nats.clone())
        .service(&service)
        .handlers(|h| h.is_in("lagging"))
        .serve_max_in_flight(2)
        .build()
        .expect("builds");
    // The durable consumer gets the events published once it exists.
    app.serve().await.expect("serves").shutdown().await;
    const N: u32 = 10;
    for n in 0..N {
        app.publish(Tick { n }).await.expect("stored");
    }

    let serving = app.serve().await.expect("serves");
    eventually(
        "the instance reports events not delivered and delivered, not acknowledged",
        || async {
            matches!(sampled(&service, "Tick"),
                Some((pending, ack_pending))
                    if pending > 0.0 && ack_pending > 0.0 && pending + ack_pending == f64::from(N))
        },
    )
    .await;
    assert_eq!(state.handled.load(Ordering::SeqCst), 0);

    state.gate.add_permits(N as usize);
    eventually("every event handled", || async {
        state.handled.load(Ordering::SeqCst) == N
    })
    .await;
    eventually("the instance reports a consumer that caught up", || async {
        sampled(&service, "Tick") == Some((0.0, 0.0))
    })
    .await;
    serving.shutdown().await;
}
