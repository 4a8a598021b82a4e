//! A broker that lost its state is recovered from (p15 on NATS): a private `nats-server` is
//! killed and started again, with its store kept and with it wiped; every event whose publish
//! was acknowledged after the restart is handled, and the time from the restart to the first
//! event handled is printed. A durable consumer deleted by an operator while the server runs
//! is created again without skipping what it had not acknowledged. A stream created earlier
//! with interest retention is kept as it is (nats-server cannot change it).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use catga_core::prelude::*;
use catga_core::testkit::{PATIENCE, eventually, settled, unique};
use catga_nats::NatsTransport;
use common::server::{PrivateServer, binary_or_skip};
use common::{Corner, Options};

/// Events published right after each restart.
const AFTER_RESTART: u64 = 31;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// The pings handled, and when each first was.
#[derive(Default)]
pub struct Pings {
    seen: Mutex<Vec<(u64, Instant)>>,
}

impl Pings {
    fn distinct(&self) -> BTreeSet<u64> {
        self.seen.lock().unwrap().iter().map(|(n, _)| *n).collect()
    }

    fn first_at_or_after(&self, from: u64) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| *n >= from)
            .map(|(_, at)| *at)
            .min()
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

pub mod svc {
    use super::*;

    #[handler]
    impl Pings {
        async fn ping(&self, ping: &Ping) -> Result<(), Never> {
            self.seen
                .lock()
                .map_err(|_| Never)?
                .push((ping.n, Instant::now()));
            Ok(())
        }
    }
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub n: u64,
}

/// Holds every handler until opened.
#[derive(Default)]
pub struct Gate {
    open: std::sync::atomic::AtomicBool,
    waiting: std::sync::atomic::AtomicU64,
    seen: Mutex<Vec<u64>>,
}

impl Gate {
    fn distinct(&self) -> BTreeSet<u64> {
        self.seen.lock().unwrap().iter().copied().collect()
    }
}

pub mod held {
    use super::*;
    use std::sync::atomic::Ordering;

    #[handler]
    impl Gate {
        async fn held(&self, event: &Held) -> Result<(), Never> {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            while !self.open.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.seen.lock().map_err(|_| Never)?.push(event.n);
            Ok(())
        }
    }
}

async fn transport(url: &str) -> NatsTransport {
    let options = Options {
        prefix: Some("rec".to_string()),
        stream: Some("REC".to_string()),
        ack_wait: Some(Duration::from_secs(5)),
        fetch_wait: Some(Duration::from_secs(1)),
        response_timeout: Some(Duration::from_secs(2)),
        ..Options::default()
    };
    common::transport::connect(url, &options)
        .await
        .expect("connect to the private server")
}

fn consumer(nats: NatsTransport, pings: &Arc<Pings>) -> Catga {
    Catga::builder()
        .state_arc(pings.clone())
        .transport(nats)
        .service("svc")
        .handlers(|h| h.name.starts_with("recovery::svc::"))
        .build()
        .unwrap()
}

/// Publishes `n`, again until the server acknowledged it (as a caller's retry loop would).
async fn publish_until_stored(publisher: &Catga, n: u64) {
    let started = Instant::now();
    while publisher.publish(Ping { n }).await.is_err() {
        assert!(started.elapsed() < PATIENCE, "ping {n} was never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(pings: &Pings, wanted: &BTreeSet<u64>, what: &str) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !wanted.is_subset(&pings.distinct()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let missing: Vec<u64> = wanted.difference(&pings.distinct()).copied().collect();
    assert!(waited.is_ok(), "{what}: never handled {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_published_after_a_restart_is_handled_store_kept_or_wiped() {
    let Some(binary) = binary_or_skip("recovery") else {
        return;
    };
    let mut server = PrivateServer::start(&binary, "catga-nats-recovery-").await;
    let url = server.url();
    let pings = Arc::new(Pings::default());
    let app = consumer(transport(&url).await, &pings);
    let serving = app.serve().await.unwrap();
    let publisher = Catga::builder()
        .transport(transport(&url).await)
        .handlers(|_| false)
        .build()
        .unwrap();
    publish_until_stored(&publisher, 0).await;
    wait_for(&pings, &BTreeSet::from([0]), "before any restart").await;

    for (round, wipe) in [(1u64, false), (2, true), (3, true)] {
        server.kill();
        if wipe {
            server.wipe();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.restart().await;
        let restarted = Instant::now();
        let first = round * 1000;
        let wanted: BTreeSet<u64> = (first..first + AFTER_RESTART).collect();
        for &n in &wanted {
            publish_until_stored(&publisher, n).await;
        }
        let published = restarted.elapsed();
        wait_for(
            &pings,
            &wanted,
            &format!("round {round} (store wiped: {wipe})"),
        )
        .await;
        let recovered = pings
            .first_at_or_after(first)
            .map(|at| at.duration_since(restarted));
        println!(
            "recovery (store wiped: {wipe}): {AFTER_RESTART} events published within {published:?} of the restart, \
             all handled; the first {recovered:?} after the restart"
        );
    }
    println!(
        "recovery: {} deliveries for {} distinct events",
        pings.total(),
        pings.distinct().len()
    );
    serving.shutdown().await;
}

/// An operator deletes the durable consumer while the service runs and has a backlog: one
/// event in hand (its handler waits), the others not yet delivered. The consumer is created
/// again from the last acknowledgement floor the instance saw, not from the end of the stream,
/// so nothing is skipped: every event is handled (some twice: at least once). (A consumer the
/// server lost at a restart, its state unreadable, is the same case: the fault test's flake
/// was one, re-created from the end of the stream by an earlier version.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_deleted_with_a_backlog_is_created_again_without_skipping() {
    let Some(corner) = Corner::new("a_durable_consumer_deleted").await else {
        return;
    };
    let nats = corner.connect().await;
    let gate = Arc::new(Gate::default());
    let service = unique("svc");
    let app = Catga::builder()
        .state_arc(gate.clone())
        .transport(nats.clone())
        .service(&service)
        .handlers(|h| h.name.starts_with("recovery::held::"))
        .serve_max_in_flight(1)
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    for n in 0..10 {
        app.publish(Held { n }).await.unwrap();
    }
    eventually("the first event in hand", || async {
        gate.waiting.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    let backlog = common::backlog(&nats, &service, "Held").await;
    assert_eq!(backlog, Some((9, 1)), "one in hand, nine not yet delivered");
    let jetstream = async_nats::jetstream::new(nats.client().clone());
    let durable = nats.durable_name(&service, "Held");
    jetstream
        .delete_consumer_from_stream(&durable, nats.stream_name())
        .await
        .unwrap();
    gate.open.store(true, std::sync::atomic::Ordering::SeqCst);
    for n in 10..15 {
        app.publish(Held { n }).await.unwrap();
    }
    let all: BTreeSet<u64> = (0..15).collect();
    let waited = tokio::time::timeout(PATIENCE, async {
        while !all.is_subset(&gate.distinct()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let missing: Vec<u64> = all.difference(&gate.distinct()).copied().collect();
    assert!(
        waited.is_ok(),
        "never handled after the deletion: {missing:?}"
    );
    println!(
        "deleted consumer: {} handler runs for 15 events",
        gate.seen.lock().unwrap().len()
    );
    settled(&corner, &service, "Held", "everything acknowledged").await;
    serving.shutdown().await;
}

/// A stream made with interest retention (by an earlier version) is kept: connecting does
/// not fail, and events still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_interest_retention_is_kept() {
    let Some(corner) = Corner::new("a_stream_with_interest_retention").await else {
        return;
    };
    let probe = async_nats::connect(corner.url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(probe);
    jetstream
        .create_stream(StreamConfig {
            name: corner.stream.clone(),
            subjects: vec![format!("{}.events.>", corner.prefix)],
            retention: RetentionPolicy::Interest,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let nats = corner.connect().await;
    let mut stream = jetstream.get_stream(&corner.stream).await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.retention, RetentionPolicy::Interest);
    let pings = Arc::new(Pings::default());
    let app = consumer(nats, &pings);
    let serving = app.serve().await.unwrap();
    app.publish(Ping { n: 1 }).await.unwrap();
    wait_for(&pings, &BTreeSet::from([1]), "an event on the old stream").await;
    serving.shutdown().await;
}
