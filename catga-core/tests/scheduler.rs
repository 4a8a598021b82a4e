//! `Scheduler` on the in-memory stores, in real time (due times are wall-clock times): a
//! scheduled event is published and a scheduled command handled once each, when due, on the
//! leader only; a cancelled one never; one scheduled while no instance leads is fired once
//! one does; across a leader change every message is fired exactly once; a message that can
//! never be fired is kept as a dead letter.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use catga_core::BoxError;
use catga_core::cluster::{Leadership, Scheduler};
use catga_core::prelude::*;
use catga_core::store::lease::LeaseStore;
use catga_core::store::memory_lease::MemoryLeaseStore;
use catga_core::store::memory_schedule::MemoryScheduleStore;
use catga_core::testkit;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReminderDue {
    pub n: u32,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseOrder {
    pub n: u32,
}

/// A command whose handler refuses it for good.
#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refused {
    pub n: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("refused for good")]
pub struct Never;

/// What the handlers saw, in order.
#[derive(Default)]
pub struct Seen(Mutex<Vec<String>>);

impl Seen {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn push(&self, what: String) {
        self.0.lock().unwrap().push(what);
    }
}

pub mod handlers {
    use super::*;

    #[handler]
    impl Seen {
        async fn reminder(&self, event: &ReminderDue) -> Result<(), BoxError> {
            self.push(format!("reminder {}", event.n));
            Ok(())
        }

        async fn close(&self, cmd: CloseOrder) -> Result<(), BoxError> {
            self.push(format!("close {}", cmd.n));
            Ok(())
        }

        async fn refused(&self, _cmd: Refused) -> Result<(), Never> {
            Err(Never)
        }
    }
}

fn app(seen: &Arc<Seen>) -> Catga {
    Catga::builder()
        .state_arc(Arc::clone(seen))
        .handlers(|h| h.is_in("handlers"))
        .build()
        .unwrap()
}

const TTL: Duration = Duration::from_millis(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_messages_are_fired_once_on_the_leader_and_a_cancelled_one_never() {
    let seen = Arc::new(Seen::default());
    let app = app(&seen);
    let scheduler = Scheduler::new(app.clone(), MemoryScheduleStore::new())
        .poll_interval(Duration::from_millis(50));
    scheduler
        .publish_after(ReminderDue { n: 1 }, Duration::from_millis(200))
        .await
        .unwrap();
    scheduler
        .send_at(
            CloseOrder { n: 2 },
            SystemTime::now() + Duration::from_millis(100),
        )
        .await
        .unwrap();
    let cancelled = scheduler
        .publish_after(ReminderDue { n: 3 }, Duration::from_millis(150))
        .await
        .unwrap();
    assert!(scheduler.cancel(cancelled).await.unwrap());
    let election = Leadership::new(MemoryLeaseStore::new(), "scheduler")
        .ttl(TTL)
        .start();
    let running = scheduler.run(&election);
    testkit::within(Duration::from_secs(10), "both due messages", || async {
        seen.all().len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.all(),
        vec!["close 2", "reminder 1"],
        "due order, once each"
    );
    running.stop().await;
    election.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_due_while_nobody_leads_is_fired_once_someone_does() {
    let seen = Arc::new(Seen::default());
    let app = app(&seen);
    let leases = Arc::new(MemoryLeaseStore::new());
    // Another process holds the lease and does nothing, then dies.
    let squatter = leases
        .acquire("scheduler", "dead-node", Duration::from_millis(800))
        .await
        .unwrap()
        .expect("vacant");
    let scheduler = Scheduler::new(app.clone(), MemoryScheduleStore::new())
        .poll_interval(Duration::from_millis(50));
    scheduler
        .publish_after(ReminderDue { n: 9 }, Duration::from_millis(50))
        .await
        .unwrap();
    let election = Leadership::sharing(Arc::clone(&leases), "scheduler")
        .ttl(TTL)
        .start();
    let running = scheduler.run(&election);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.all().is_empty(), "nobody here leads yet");
    testkit::within(Duration::from_secs(10), "the late message", || async {
        seen.all().len() == 1
    })
    .await;
    let leader = election.leader().expect("leads now");
    assert!(leader.token() > squatter.token);
    assert_eq!(seen.all(), vec!["reminder 9"]);
    running.stop().await;
    election.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_leader_change_every_message_is_fired_exactly_once() {
    let seen = Arc::new(Seen::default());
    let app = app(&seen);
    let leases = Arc::new(MemoryLeaseStore::new());
    let schedules = Arc::new(MemoryScheduleStore::new());
    let a = Scheduler::sharing(app.clone(), Arc::clone(&schedules))
        .poll_interval(Duration::from_millis(20));
    let b = Scheduler::sharing(app.clone(), Arc::clone(&schedules))
        .poll_interval(Duration::from_millis(20));
    let elect = |holder: &str| {
        Leadership::sharing(Arc::clone(&leases), "scheduler")
            .holder(holder)
            .ttl(TTL)
            .start()
    };
    let (on_a, on_b) = (elect("a"), elect("b"));
    let (run_a, run_b) = (a.run(&on_a), b.run(&on_b));
    for n in 0..200u32 {
        a.publish_after(ReminderDue { n }, Duration::from_millis(u64::from(n) * 5))
            .await
            .unwrap();
    }
    // Stop whichever leads, midway.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = if on_a.leader().is_some() {
        &on_a
    } else {
        &on_b
    };
    first.stop().await;
    testkit::within(Duration::from_secs(20), "all 200 reminders", || async {
        seen.all().len() >= 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut all = seen.all();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "each once");
    assert_eq!(seen.all().len(), 200, "none twice");
    assert!(schedules.is_empty());
    run_a.stop().await;
    run_b.stop().await;
    on_a.stop().await;
    on_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_can_never_be_fired_is_kept_as_a_dead_letter() {
    let seen = Arc::new(Seen::default());
    let app = app(&seen);
    let schedules = Arc::new(MemoryScheduleStore::new());
    let scheduler = Scheduler::sharing(app.clone(), Arc::clone(&schedules))
        .poll_interval(Duration::from_millis(20));
    let id = scheduler
        .send_after(Refused { n: 1 }, Duration::from_millis(20))
        .await
        .unwrap();
    let election = Leadership::new(MemoryLeaseStore::new(), "scheduler")
        .ttl(TTL)
        .start();
    let running = scheduler.run(&election);
    testkit::within(Duration::from_secs(10), "the dead letter", || async {
        app.dead_letters().count_dyn().await.unwrap() == 1
    })
    .await;
    let letters = app.dead_letters().list_dyn(10).await.unwrap();
    assert_eq!(letters[0].message_id, id);
    assert_eq!(letters[0].source.as_deref(), Some("scheduler"));
    assert!(schedules.is_empty(), "removed from the schedule");
    running.stop().await;
    election.stop().await;
}

/// A leader whose token the store refuses (its floor came from another election) fires
/// nothing, keeps trying, and says so in its health check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_the_store_fences_off_fires_nothing_and_is_not_ready() {
    use catga_core::store::lease::FencingToken;
    use catga_core::store::schedule::ScheduleStore;
    let seen = Arc::new(Seen::default());
    let app = app(&seen);
    let schedules = Arc::new(MemoryScheduleStore::new());
    // Another election, under another lease name, got further.
    schedules.fired(&[], FencingToken::new(10)).await.unwrap();
    let scheduler = Scheduler::sharing(app.clone(), Arc::clone(&schedules))
        .poll_interval(Duration::from_millis(20));
    scheduler
        .publish_after(ReminderDue { n: 1 }, Duration::from_millis(10))
        .await
        .unwrap();
    let election = Leadership::new(MemoryLeaseStore::new(), "scheduler")
        .ttl(TTL)
        .start();
    let running = scheduler.run(&election);
    app.add_health_check("scheduler", running.health_check());
    testkit::within(Duration::from_secs(10), "the check going down", || async {
        !app.health().ready
    })
    .await;
    assert!(election.leader().is_some(), "it leads");
    assert!(app.health().to_string().contains("higher fencing token"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.all().is_empty(), "nothing fired");
    assert_eq!(schedules.len(), 1, "the message waits");
    election.stop().await;
    testkit::within(
        Duration::from_secs(10),
        "up once no longer leading",
        || async { app.health().ready },
    )
    .await;
    running.stop().await;
}
