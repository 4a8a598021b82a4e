//! Load shared by capacity on NATS: two instances of one service, one allowed 4 messages in
//! flight and the other 8 (`serve_max_in_flight`), consume one stream of events and answer
//! requests sent concurrently, each handler taking 10 ms. Each pull asks for no more events
//! than the instance has free slots, and each instance joins the requests' queue group with one
//! subscription per slot (the server picks a subscription of the group at random per request),
//! so the instance with twice the slots takes about twice the events and about twice the
//! requests. Both splits are printed and asserted as counts: 8 slots take 1.5 to 2.7 times
//! what 4 slots take.
//!
//! The requests' split is random: the 4-slot instance's count is binomial (1,200, 1/3), mean
//! 400 and standard deviation 16.3, and the bounds are 325–480 (4.6 and 4.9 deviations), so
//! a run falls outside them by chance about twice in a million. The events' split follows
//! the free slots, not chance.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::testkit;
use common::Corner;

const EVENTS: u64 = 600;
const REQUESTS: u64 = 1_200;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkQueued {
    pub n: u64,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DoWork {
    pub n: u64,
}

/// How much one instance did.
#[derive(Default)]
pub struct Done {
    events: AtomicU64,
    requests: AtomicU64,
}

pub mod workers {
    use super::*;

    #[handler]
    impl Done {
        async fn queued(&self, _event: &WorkQueued) -> Result<(), std::convert::Infallible> {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.events.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn work(&self, cmd: DoWork) -> Result<u64, std::convert::Infallible> {
            tokio::time::sleep(Duration::from_millis(10)).await;
            self.requests.fetch_add(1, Ordering::SeqCst);
            Ok(cmd.n)
        }
    }
}

async fn instance(corner: &Corner, slots: usize, done: &Arc<Done>) -> Catga {
    Catga::builder()
        .transport(corner.connect().await)
        .service("workers")
        .serve_max_in_flight(slots)
        .state_arc(Arc::clone(done))
        .handlers(|h| h.is_in("workers"))
        .build()
        .expect("builds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_twice_the_slots_takes_about_twice_the_events_and_requests() {
    let Some(corner) = Corner::new("capacity").await else {
        return;
    };
    let (small, large) = (Arc::new(Done::default()), Arc::new(Done::default()));
    let one = instance(&corner, 4, &small).await;
    let two = instance(&corner, 8, &large).await;
    let (s1, s2) = (
        one.serve().await.expect("serves"),
        two.serve().await.expect("serves"),
    );
    let producer = Catga::builder()
        .transport(corner.connect().await)
        .service("producer")
        .handlers(|_| false)
        .build()
        .expect("builds");
    for n in 0..EVENTS {
        producer.publish(WorkQueued { n }).await.expect("published");
    }
    let total = || small.events.load(Ordering::SeqCst) + large.events.load(Ordering::SeqCst);
    testkit::within(Duration::from_secs(60), "every event", || async {
        total() == EVENTS
    })
    .await;
    let (a, b) = (
        small.events.load(Ordering::SeqCst),
        large.events.load(Ordering::SeqCst),
    );
    eprintln!(
        "events: 4 slots {a}, 8 slots {b} (ratio {:.2})",
        b as f64 / a as f64
    );
    assert!(
        b * 10 >= a * 15 && b * 10 <= a * 27,
        "8 slots should take about twice what 4 slots take: {a} vs {b}"
    );

    let calls: Vec<_> = (0..REQUESTS)
        .map(|n| {
            let producer = producer.clone();
            tokio::spawn(async move { producer.send(DoWork { n }).await })
        })
        .collect();
    for call in calls {
        call.await.expect("a caller").expect("answered");
    }
    let (a, b) = (
        small.requests.load(Ordering::SeqCst),
        large.requests.load(Ordering::SeqCst),
    );
    eprintln!(
        "requests: 4 slots {a}, 8 slots {b} (ratio {:.2})",
        b as f64 / a as f64
    );
    assert_eq!(a + b, REQUESTS);
    assert!(
        b * 10 >= a * 15 && b * 10 <= a * 27,
        "8 slots should take about twice the requests 4 slots take: {a} vs {b}"
    );
    s1.shutdown().await;
    s2.shutdown().await;
}
