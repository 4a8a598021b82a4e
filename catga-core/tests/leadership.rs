//! `Leadership` on the in-memory lease store, on Tokio's paused clock: one of three
//! instances leads; a stopped leader hands over within a follower's retry interval; a dead
//! one (dropped without releasing) within the TTL plus that; a leader whose store refuses its
//! renewals steps down no later than its TTL after its last renewal; a leader paused past its
//! lease sees its leadership end as soon as it runs again, and a store's token floor refuses
//! its stale writes.

use std::sync::Arc;
use std::time::Duration;

use catga_core::BoxError;
use catga_core::cluster::{Leader, Leadership, Role};
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore, TokenFloor};
use catga_core::store::memory_lease::MemoryLeaseStore;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(5);

/// Waits (virtual time) until one of `elections` leads; returns its index and leadership.
async fn leader_among(elections: &[catga_core::cluster::Elected]) -> (usize, Leader) {
    for _ in 0..10_000 {
        if let Some(found) = elections
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.leader().map(|l| (i, l)))
        {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no instance leads after 100 s");
}

fn three(store: &Arc<MemoryLeaseStore>) -> Vec<catga_core::cluster::Elected> {
    (0..3)
        .map(|i| {
            Leadership::sharing(Arc::clone(store), "scheduler")
                .holder(format!("node-{i}"))
                .ttl(TTL)
                .start()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn one_of_three_leads_and_a_stopped_leader_hands_over_within_the_retry_interval() {
    let store = Arc::new(MemoryLeaseStore::new());
    let elections = three(&store);
    let (first, leader) = leader_among(&elections).await;
    tokio::time::sleep(3 * TTL).await;
    let leading: Vec<_> = elections.iter().filter(|e| e.leader().is_some()).collect();
    assert_eq!(leading.len(), 1, "one leader across renewals");
    assert!(leader.is_held(), "renewed past its first TTL");
    for (i, e) in elections.iter().enumerate() {
        if i != first {
            assert_eq!(e.role(), Role::Follower { leader_seen: true });
        }
    }

    let stopped = Instant::now();
    elections[first].stop().await;
    assert!(!leader.is_held(), "a stopped leader's work sees its end");
    assert_eq!(elections[first].role(), Role::Stopped);
    let (second, next) = leader_among(&elections).await;
    assert_ne!(second, first);
    assert!(next.token() > leader.token());
    assert!(
        stopped.elapsed() <= TTL / 10 + Duration::from_millis(20),
        "handed over in {:?}: a follower's retry, not the TTL",
        stopped.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_leader_is_replaced_within_its_ttl_and_one_retry() {
    let store = Arc::new(MemoryLeaseStore::new());
    let mut elections = three(&store);
    let (first, leader) = leader_among(&elections).await;
    let died = Instant::now();
    // Dropped: the elector stops without releasing, as a killed process would.
    drop(elections.remove(first));
    let (_, next) = leader_among(&elections).await;
    assert!(next.token() > leader.token());
    assert!(
        died.elapsed() <= TTL + TTL / 10 + Duration::from_millis(20),
        "replaced after {:?}",
        died.elapsed()
    );
}

/// A store that grants, then refuses every renewal with an error (unreachable).
struct Unreachable(MemoryLeaseStore);

impl LeaseStore for Unreachable {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        self.0.acquire(name, holder, ttl).await
    }
    async fn renew(&self, _grant: &Grant, _ttl: Duration) -> Result<bool, BoxError> {
        Err("connection refused".into())
    }
    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        self.0.release(grant).await
    }
    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        self.0.observe(name).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_when_its_ttl_runs_out() {
    let election = Leadership::new(Unreachable(MemoryLeaseStore::new()), "sweeper")
        .ttl(TTL)
        .start();
    let (_, leader) = leader_among(std::slice::from_ref(&election)).await;
    let led = Instant::now();
    leader.lost().await;
    assert!(
        led.elapsed() <= TTL,
        "stepped down {:?} after the grant, its TTL is {TTL:?}",
        led.elapsed()
    );
    assert!(!leader.is_held());
}

/// A leader whose process stalls past its lease: when it runs again its leadership reads as
/// ended at once, and a write it still attempts with its token is refused by a store that has
/// seen the new leader's.
#[tokio::test(start_paused = true)]
async fn a_leader_paused_past_its_lease_is_fenced_off() {
    let store = Arc::new(MemoryLeaseStore::new());
    let floor = TokenFloor::new();
    let old = store
        .acquire("scheduler", "node-a", TTL)
        .await
        .unwrap()
        .expect("vacant");
    floor.admit(old.token).expect("the first writer");
    // node-a stalls (no renewal) past its TTL; node-b takes over and writes.
    tokio::time::sleep(TTL + Duration::from_millis(1)).await;
    let new = store
        .acquire("scheduler", "node-b", TTL)
        .await
        .unwrap()
        .expect("the old grant ran out");
    floor.admit(new.token).expect("the new leader writes");
    let refused = floor.admit(old.token).expect_err("the old leader's write");
    assert_eq!(refused.presented, old.token);
    assert_eq!(refused.seen, new.token);
    assert!(
        !store.renew(&old, TTL).await.unwrap(),
        "its renewal says it lost"
    );
    assert_eq!(floor.seen(), new.token);
    assert!(new.token > FencingToken::new(1));
}

/// Work run while leading starts on the leader only, is dropped when the leadership ends, and
/// starts on the next leader.
#[tokio::test(start_paused = true)]
async fn singleton_work_runs_on_the_leader_only_and_moves_with_it() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let store = Arc::new(MemoryLeaseStore::new());
    let elections = three(&store);
    let running: Vec<Arc<AtomicU32>> = (0..3).map(|_| Arc::new(AtomicU32::new(0))).collect();
    let work: Vec<_> = elections
        .iter()
        .zip(&running)
        .map(|(election, running)| {
            let running = Arc::clone(running);
            election.run_while_leading(move |leader| {
                let running = Arc::clone(&running);
                async move {
                    running.fetch_add(1, Ordering::SeqCst);
                    let _still = Guard(Arc::clone(&running));
                    leader.lost().await;
                    std::future::pending::<()>().await;
                }
            })
        })
        .collect();
    let (first, _) = leader_among(&elections).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now: Vec<u32> = running.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert_eq!(now.iter().sum::<u32>(), 1, "running on one node: {now:?}");
    assert_eq!(now[first], 1);
    elections[first].stop().await;
    let (second, _) = leader_among(&elections).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let now: Vec<u32> = running.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert_eq!(now[first], 0, "dropped on the old leader");
    assert_eq!(now[second], 1, "started on the new one");
    for w in work {
        w.stop().await;
    }
}

/// Counts down when the work it lives in is dropped.
struct Guard(Arc<std::sync::atomic::AtomicU32>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn the_leader_gauges_follow_the_lease_and_its_token() {
    use catga_core::telemetry::metric;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // (leader, epoch) as last set; one snapshot each (taking one resets what it read).
    let gauges = || {
        let snapshot = snapshotter.snapshot().into_vec();
        let read = |name: &str| {
            snapshot.iter().find_map(|(key, .., value)| {
                let ours = key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "lease" && l.value() == "gauged");
                match value {
                    DebugValue::Gauge(v) if ours => Some(v.into_inner()),
                    _ => None,
                }
            })
        };
        (read(metric::LEADER), read(metric::LEADER_EPOCH))
    };
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Arc::new(MemoryLeaseStore::new());
            let election = Leadership::sharing(Arc::clone(&store), "gauged")
                .ttl(TTL)
                .start();
            let (_, leader) = leader_among(std::slice::from_ref(&election)).await;
            #[allow(clippy::cast_precision_loss)]
            let token = leader.token().get() as f64;
            assert_eq!(gauges(), (Some(1.0), Some(token)));
            election.stop().await;
            assert_eq!(gauges().0, Some(0.0), "stepped down");
        });
    });
}

#[tokio::test(start_paused = true)]
async fn timing_that_cannot_work_is_refused_and_the_election_never_spins() {
    use catga_core::cluster::InvalidTiming;
    use catga_core::health::HealthCheck;

    let store = Arc::new(MemoryLeaseStore::new());
    let refused = Leadership::sharing(Arc::clone(&store), "spin")
        .ttl(Duration::ZERO)
        .try_start()
        .map(|_| ())
        .expect_err("a zero TTL is refused");
    assert_eq!(
        refused,
        InvalidTiming::TtlTooShort {
            ttl: Duration::ZERO
        }
    );
    let refused = Leadership::sharing(Arc::clone(&store), "spin")
        .retry_every(Duration::ZERO)
        .try_start()
        .map(|_| ())
        .expect_err("a zero retry interval is refused");
    assert_eq!(refused, InvalidTiming::RetryEvery);

    // `start` reports it instead of spinning: stopped, and down with the reason.
    let election = Leadership::sharing(Arc::clone(&store), "spin")
        .ttl(Duration::ZERO)
        .start();
    tokio::time::sleep(TTL).await;
    assert_eq!(election.role(), Role::Stopped);
    assert!(election.leader().is_none());
    let status = election.health_check().check();
    assert!(
        format!("{status:?}").contains("TTL"),
        "the health check says why: {status:?}"
    );
    assert_eq!(
        store.observe("spin").await.expect("observe"),
        catga_core::store::lease::LeaseState::Vacant,
        "the store was never asked"
    );
    election.stop().await;
}
