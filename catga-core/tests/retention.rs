//! `Retention` on the in-memory lease store, on Tokio's paused clock: only the leader sweeps,
//! at once on its leadership and then every interval; a failing sweep neither stops the
//! others nor the next round and is counted; a leadership that ends stops the sweeps, and the
//! next leader takes them up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use catga_core::cluster::{
    Elected, Leadership, RETENTION_FAILURES, RETENTION_PURGED, Retention, Singleton,
};
use catga_core::store::memory_lease::MemoryLeaseStore;

const TTL: Duration = Duration::from_secs(5);
const EVERY: Duration = Duration::from_secs(60);

/// A store whose purge counts its calls and removes three records each time, or fails.
#[derive(Clone, Default)]
struct Swept {
    calls: Arc<AtomicU64>,
    fail: bool,
}

impl Swept {
    fn failing() -> Swept {
        Swept {
            fail: true,
            ..Swept::default()
        }
    }

    async fn purge_older_than(&self, _age: Duration) -> Result<u64, std::io::Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail {
            return Err(std::io::Error::other("the store is down"));
        }
        Ok(3)
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn sweeping(election: &Elected, store: &Swept, failing: &Swept) -> Singleton {
    Retention::new()
        .every(EVERY)
        .sweep("failing", failing.clone(), |s| async move {
            s.purge_older_than(Duration::from_secs(1)).await
        })
        .sweep("records", store.clone(), |s| async move {
            s.purge_older_than(Duration::from_secs(1)).await
        })
        .run(election)
}

/// Waits (virtual time) until one of `elections` leads; returns its index.
async fn leader_among(elections: &[Elected]) -> usize {
    for _ in 0..10_000 {
        if let Some(i) = elections.iter().position(|e| e.leader().is_some()) {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no instance leads after 100 s");
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_sweeps_at_once_then_every_interval_and_the_next_leader_takes_over() {
    let leases = Arc::new(MemoryLeaseStore::new());
    let elections: Vec<Elected> = (0..2)
        .map(|i| {
            Leadership::sharing(Arc::clone(&leases), "retention")
                .holder(format!("node-{i}"))
                .ttl(TTL)
                .start()
        })
        .collect();
    let stores = [Swept::default(), Swept::default()];
    let failing = [Swept::failing(), Swept::failing()];
    let running: Vec<Singleton> = (0..2)
        .map(|i| sweeping(&elections[i], &stores[i], &failing[i]))
        .collect();

    let first = leader_among(&elections).await;
    let other = 1 - first;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stores[first].calls(), 1, "a round at once on leadership");
    assert_eq!(failing[first].calls(), 1, "the failing sweep ran first");
    assert_eq!(stores[other].calls(), 0, "a follower does not sweep");

    tokio::time::sleep(EVERY * 3).await;
    assert_eq!(stores[first].calls(), 4, "one round per interval");
    assert_eq!(
        failing[first].calls(),
        4,
        "a failure does not stop the next round"
    );
    assert_eq!(stores[other].calls(), 0);

    // The leader steps down (a graceful stop releases the lease): its sweeps stop, the other
    // instance leads and sweeps at once.
    elections[first].stop().await;
    let before = stores[first].calls();
    let next = leader_among(&elections).await;
    assert_eq!(next, other);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stores[other].calls(), 1, "the new leader sweeps at once");
    tokio::time::sleep(EVERY * 2).await;
    assert_eq!(
        stores[first].calls(),
        before,
        "a former leader sweeps no more"
    );
    assert_eq!(stores[other].calls(), 3);

    for singleton in running {
        singleton.stop().await;
    }
    tokio::time::sleep(EVERY * 2).await;
    assert_eq!(
        stores[other].calls(),
        3,
        "a stopped retention sweeps no more"
    );
}

#[test]
fn purged_records_and_failures_are_counted_per_sweep() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let election = Leadership::new(MemoryLeaseStore::new(), "counted")
                .ttl(TTL)
                .start();
            let (store, failing) = (Swept::default(), Swept::failing());
            let running = sweeping(&election, &store, &failing);
            leader_among(std::slice::from_ref(&election)).await;
            tokio::time::sleep(EVERY + EVERY / 2).await;
            assert_eq!(store.calls(), 2);
            running.stop().await;
            election.stop().await;
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, sweep: &str| {
        snapshot.iter().find_map(|(key, .., value)| {
            let ours = key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "sweep" && l.value() == sweep);
            match value {
                DebugValue::Counter(n) if ours => Some(*n),
                _ => None,
            }
        })
    };
    assert_eq!(counter(RETENTION_PURGED, "records"), Some(6), "3 per round");
    assert_eq!(counter(RETENTION_FAILURES, "failing"), Some(2));
    assert_eq!(counter(RETENTION_FAILURES, "records"), None);
}
