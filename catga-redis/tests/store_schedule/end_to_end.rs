//! catga-core's `Scheduler` on two instances, electing their leader through the Redis lease
//! store, firing every message exactly once across a change of leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use catga_core::cluster::{Leadership, Scheduler};
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::testkit;

use super::common::slice::Slice;
use super::query;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReminderDue {
    pub n: u32,
}

/// How often each reminder was handled.
#[derive(Default)]
pub struct Deliveries(Mutex<HashMap<u32, u32>>);

impl Deliveries {
    fn counts(&self) -> HashMap<u32, u32> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub mod reminders {
    use super::*;

    #[handler]
    impl Deliveries {
        async fn reminder(&self, event: &ReminderDue) -> Result<(), BoxError> {
            *self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(event.n)
                .or_default() += 1;
            Ok(())
        }
    }
}

/// Two schedulers of one application share one Redis schedule store, each running on an
/// election of its own (a connection of its own) through the Redis lease store with a 1 s TTL.
/// 200 reminders are scheduled 0 to 1 s ahead; midway the leader's election stops (it releases
/// the lease, and the other instance leads with a greater token): every reminder is handled
/// exactly once, the store is left empty and the fence holds the second leader's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fire_every_message_exactly_once_across_a_change_of_leader() {
    let Some(slice) = Slice::open("schedule_end_to_end").await else {
        return;
    };
    let deliveries = Arc::new(Deliveries::default());
    let app = Catga::builder()
        .state_arc(Arc::clone(&deliveries))
        .handlers(|h| h.is_in("end_to_end::reminders"))
        .build()
        .expect("builds");
    let store = Arc::new(slice.stores.schedules());
    let mut instances = Vec::new();
    for holder in ["a", "b"] {
        let scheduler = Scheduler::sharing(app.clone(), Arc::clone(&store))
            .poll_interval(Duration::from_millis(20))
            .claim_lease(Duration::from_secs(2))
            .batch(16);
        let election = Leadership::new(slice.connect().await.leases(), "scheduler")
            .holder(holder)
            .ttl(Duration::from_secs(1))
            .start();
        let running = scheduler.run(&election);
        instances.push((scheduler, election, running));
    }
    for n in 0..200u32 {
        let scheduler = &instances[usize::try_from(n % 2).expect("0 or 1")].0;
        scheduler
            .publish_after(ReminderDue { n }, Duration::from_millis(u64::from(n) * 5))
            .await
            .expect("scheduled");
    }

    // Midway through, stop whichever leads (once one does, and some reminders went out).
    testkit::eventually("a leader handling reminders", || async {
        instances.iter().any(|(_, e, _)| e.leader().is_some()) && !deliveries.counts().is_empty()
    })
    .await;
    let (first, first_token) = instances
        .iter()
        .enumerate()
        .find_map(|(i, (_, e, _))| e.leader().map(|l| (i, l.token())))
        .expect("one leads");
    let handled_before = deliveries.counts().len();
    instances[first].1.stop().await;
    let other = &instances[1 - first].1;
    testkit::eventually("the other instance leads", || async {
        other.leader().is_some()
    })
    .await;
    let second_token = other.leader().expect("leads").token();
    assert!(
        second_token > first_token,
        "a newer leader, a greater token"
    );

    let mut raw = slice.raw().await;
    testkit::eventually("all 200 reminders handled, the store empty", || {
        let (deliveries, mut raw, store) = (&deliveries, raw.clone(), &store);
        async move {
            let left: usize = query(&mut raw, &["ZCARD", store.due_key()]).await;
            deliveries.counts().len() == 200 && left == 0
        }
    })
    .await;
    let counts = deliveries.counts();
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    assert!(
        handled_before < 200,
        "the leader was stopped before all were handled ({handled_before})"
    );
    let fence: Option<String> = query(&mut raw, &["GET", store.fence_key()]).await;
    assert_eq!(
        fence,
        Some(second_token.get().to_string()),
        "the fence was raised to the second leader's token"
    );
    let tag = format!("{{{}:schedule}}", slice.prefix);
    let keys: Vec<String> = slice
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with(&tag))
        .collect();
    assert_eq!(keys, [store.fence_key()], "no message left");
    for (_, election, running) in instances {
        running.stop().await;
        election.stop().await;
    }
}
