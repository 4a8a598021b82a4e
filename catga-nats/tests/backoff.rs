//! The redelivery schedule: after a retryable failure on delivery `n`, delivery `n + 1` comes
//! after step `n` of the `backoff`, and the last step repeats. Needs the NATS server.
//! (`catga-redis/tests/backoff.rs` checks the same on Redis.)

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use catga_core::testkit::{eventually, unique};
use common::{Corner, Options};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The schedule under test: a short first step, a clearly longer second one that repeats.
const FIRST: Duration = Duration::from_millis(150);
const THEN: Duration = Duration::from_millis(700);

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wobbly {
    pub n: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("not yet")]
pub struct NotYet;

impl Retryable for NotYet {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// When each delivery ran.
#[derive(Default)]
pub struct Runs {
    at: Mutex<Vec<Instant>>,
}

impl Runs {
    fn at(&self) -> Vec<Instant> {
        self.at.lock().unwrap().clone()
    }
}

pub mod wobbly {
    use super::*;

    #[handler]
    impl Runs {
        async fn on_wobbly(&self, _event: &Wobbly) -> Result<(), NotYet> {
            self.at.lock().map_err(|_| NotYet)?.push(Instant::now());
            Err(NotYet)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_redelivery_waits_for_its_step_of_the_backoff_and_the_last_step_repeats() {
    let Some(corner) = Corner::new("each_redelivery_waits_for_its_step").await else {
        return;
    };
    let nats = corner
        .connect_with(Options {
            backoff: Some(vec![FIRST, THEN]),
            max_deliveries: Some(4),
            ..corner.options()
        })
        .await;
    let runs = Arc::new(Runs::default());
    let app = Catga::builder()
        .state_arc(runs.clone())
        .transport(nats)
        .service(unique("wobbly"))
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    app.publish(Wobbly { n: 1 }).await.unwrap();
    eventually("four deliveries", || async { runs.at().len() >= 4 }).await;
    serving.shutdown().await;

    let at = runs.at();
    assert_eq!(at.len(), 4, "max_deliveries(4): {at:?}");
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= FIRST && gaps[0] < THEN,
        "the first redelivery waits the first step: {gaps:?}"
    );
    assert!(
        gaps[1] >= THEN && gaps[2] >= THEN,
        "later ones wait the last step, again and again: {gaps:?}"
    );
    assert!(
        gaps[1] > gaps[0] + ms(300),
        "the delays grow per attempt: {gaps:?}"
    );
}
