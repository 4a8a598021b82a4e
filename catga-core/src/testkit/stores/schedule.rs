//! The [`ScheduleStore`] scenarios: only due messages are claimed, earliest first and up to
//! the limit; an id is kept once; a claimed message is not claimed again until its claim runs
//! out; `fired` and `cancel` remove for good; a stale token is refused and changes nothing;
//! concurrent claimers never take one message twice; `next_due` is the earliest unclaimed due
//! time; the envelope comes back exactly as it was kept.
//!
//! Each scenario takes a fresh store (one store per scenario: the fencing floor is the
//! store's) and panics with what it expected.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Barrier;
use uuid::Uuid;

use crate::codec::WireFormat;
use crate::envelope::Envelope;
use crate::message::MessageKind;
use crate::store::lease::FencingToken;
use crate::store::schedule::{ScheduleStore, Scheduled, is_stale};
use crate::testkit::PATIENCE;

/// Writes the [`ScheduleStore`] suite into this test binary: one `#[test]` per scenario of
/// [`testkit::stores::schedule`](crate::testkit::stores::schedule), in a module
/// `schedule_store`, each on a store `$open` gives.
///
/// `$open` is an async function or closure taking the scenario's name (`&'static str`) and
/// returning `Option<S>` for some `S: ScheduleStore`: a fresh, isolated store (its own
/// fencing floor), or `None` to skip the test when its server is unreachable.
///
/// ```ignore
/// use catga_core::store::memory_schedule::MemoryScheduleStore;
///
/// catga_core::testkit::stores::schedule_store_conformance!(|_scenario| async {
///     Some(MemoryScheduleStore::new())
/// });
/// ```
#[macro_export]
macro_rules! schedule_store_conformance {
    ($open:expr $(,)?) => {
        /// Opens the store one scenario of the schedule store suite runs on.
        fn __catga_open_schedule_store(
            scenario: &'static str,
        ) -> impl ::core::future::Future<
            Output = ::core::option::Option<impl $crate::store::schedule::ScheduleStore>,
        > {
            ($open)(scenario)
        }

        /// The schedule store suite: one test per scenario.
        pub mod schedule_store {
            $crate::__catga_store_tests!(
                super::__catga_open_schedule_store,
                schedule,
                [
                    only_due_messages_are_claimed_earliest_first_up_to_the_limit,
                    an_id_is_kept_once,
                    a_claimed_message_is_claimed_again_only_after_its_claim_runs_out,
                    fired_and_cancelled_messages_are_gone_for_good,
                    a_stale_token_is_refused_and_changes_nothing,
                    concurrent_claimers_never_take_one_message_twice,
                    next_due_is_the_earliest_unclaimed_due_time,
                    the_envelope_comes_back_exactly_as_kept,
                ]
            );
        }
    };
}

/// A claim lease no scenario outlives.
const LONG: Duration = Duration::from_secs(120);
/// A claim lease a scenario waits out.
const SHORT: Duration = Duration::from_millis(300);
const POLL: Duration = Duration::from_millis(20);

fn token(n: u64) -> FencingToken {
    FencingToken::new(n)
}

/// Now, to the microsecond (what every store keeps).
fn now() -> SystemTime {
    super::now_in_micros()
}

/// A message due at `due` (an event with a small JSON payload).
fn message(due: SystemTime) -> Scheduled {
    let id = Uuid::now_v7();
    Scheduled {
        due,
        envelope: Envelope {
            id,
            name: "testkit.reminder_due".into(),
            kind: MessageKind::Event,
            correlation_id: id,
            causation_id: None,
            timestamp_ms: 1_700_000_000_000,
            deadline_ms: None,
            traceparent: None,
            tracestate: None,
            headers: Vec::new(),
            format: WireFormat::Json,
            payload: br#"{"order":7}"#.to_vec(),
        },
    }
}

async fn schedule(store: &impl ScheduleStore, m: &Scheduled) -> bool {
    store
        .schedule(m)
        .await
        .unwrap_or_else(|e| panic!("schedule {}: {e}", m.id()))
}

async fn claim(store: &impl ScheduleStore, limit: usize, t: u64, lease: Duration) -> Vec<Uuid> {
    store
        .claim_due(limit, token(t), lease)
        .await
        .unwrap_or_else(|e| panic!("claim_due({limit}, token {t}): {e}"))
        .iter()
        .map(Scheduled::id)
        .collect()
}

async fn fired(store: &impl ScheduleStore, ids: &[Uuid], t: u64) {
    store
        .fired(ids, token(t))
        .await
        .unwrap_or_else(|e| panic!("fired(token {t}): {e}"));
}

/// Three past messages and one due in a while: a claim of two takes the two earliest, the
/// next claim the third, and the future one only once it is due.
pub async fn only_due_messages_are_claimed_earliest_first_up_to_the_limit<S: ScheduleStore>(
    store: S,
) {
    let at = now();
    let later = message(at + SHORT);
    let past: Vec<Scheduled> = (1..=3u64)
        .rev()
        .map(|s| message(at - Duration::from_secs(s)))
        .collect();
    assert!(schedule(&store, &later).await);
    for m in &past {
        assert!(schedule(&store, m).await);
    }
    let first = claim(&store, 2, 1, LONG).await;
    assert_eq!(
        first,
        vec![past[0].id(), past[1].id()],
        "the two earliest, in due order"
    );
    assert_eq!(
        claim(&store, 10, 1, LONG).await,
        vec![past[2].id()],
        "the third; not the future one"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let taken = claim(&store, 10, 1, LONG).await;
        if !taken.is_empty() {
            assert_eq!(taken, vec![later.id()]);
            assert!(SystemTime::now() >= later.due, "claimed before it was due");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the future message never came due"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Scheduling an id already kept says so and keeps the first.
pub async fn an_id_is_kept_once<S: ScheduleStore>(store: S) {
    let m = message(now() - Duration::from_secs(1));
    assert!(schedule(&store, &m).await);
    let mut again = m.clone();
    again.due = now() + LONG;
    assert!(!schedule(&store, &again).await, "the same id again");
    let taken = store
        .claim_due(10, token(1), LONG)
        .await
        .expect("claim_due");
    assert_eq!(taken, vec![m], "one message, as first kept");
}

/// Claimed for a short lease: not claimable meanwhile, claimable again once it ran out.
pub async fn a_claimed_message_is_claimed_again_only_after_its_claim_runs_out<S: ScheduleStore>(
    store: S,
) {
    let m = message(now() - Duration::from_secs(1));
    schedule(&store, &m).await;
    assert_eq!(claim(&store, 10, 1, SHORT).await, vec![m.id()]);
    assert!(
        claim(&store, 10, 1, SHORT).await.is_empty(),
        "held by the first claim"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        tokio::time::sleep(POLL).await;
        let taken = claim(&store, 10, 2, LONG).await;
        if !taken.is_empty() {
            assert_eq!(taken, vec![m.id()], "late, never lost");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the claim never ran out"
        );
    }
}

/// `fired` removes claimed messages for good, `cancel` removes a kept one (claimed or not),
/// and neither finds them again.
pub async fn fired_and_cancelled_messages_are_gone_for_good<S: ScheduleStore>(store: S) {
    let past = now() - Duration::from_secs(1);
    let (a, b, c) = (message(past), message(past), message(now() + LONG));
    for m in [&a, &b, &c] {
        schedule(&store, m).await;
    }
    assert_eq!(claim(&store, 10, 1, SHORT).await, vec![a.id(), b.id()]);
    fired(&store, &[a.id()], 1).await;
    assert!(
        store.cancel(b.id()).await.expect("cancel"),
        "a claimed message is cancelled"
    );
    assert!(
        store.cancel(c.id()).await.expect("cancel"),
        "a future one too"
    );
    assert!(
        !store.cancel(a.id()).await.expect("cancel"),
        "a fired one is gone"
    );
    fired(&store, &[b.id(), Uuid::now_v7()], 1).await;
    tokio::time::sleep(SHORT + POLL).await;
    assert!(
        claim(&store, 10, 1, LONG).await.is_empty(),
        "nothing comes back"
    );
    assert_eq!(store.next_due().await.expect("next_due"), None);
}

/// After token 5, token 4 can neither claim nor fire (an error whose source is `StaleToken`),
/// and the messages stay as they were.
pub async fn a_stale_token_is_refused_and_changes_nothing<S: ScheduleStore>(store: S) {
    let past = now() - Duration::from_secs(1);
    let (a, b) = (message(past), message(past));
    schedule(&store, &a).await;
    assert_eq!(claim(&store, 1, 5, SHORT).await, vec![a.id()]);
    schedule(&store, &b).await;
    let refused = store
        .claim_due(10, token(4), LONG)
        .await
        .expect_err("token 4 after 5");
    assert!(is_stale(&refused), "a stale token's refusal: {refused}");
    let refused = store
        .fired(&[a.id()], token(4))
        .await
        .expect_err("token 4 after 5");
    assert!(is_stale(&refused), "{refused}");
    assert_eq!(
        claim(&store, 10, 6, LONG).await,
        vec![b.id()],
        "b was not taken by the refused claim; a is still claimed by token 5"
    );
    tokio::time::sleep(SHORT + POLL).await;
    assert_eq!(
        claim(&store, 10, 6, LONG).await,
        vec![a.id()],
        "a was not fired by token 4"
    );
}

/// Eight claimers at once over 40 due messages: every message goes to exactly one.
pub async fn concurrent_claimers_never_take_one_message_twice<S: ScheduleStore>(store: S) {
    let past = now() - Duration::from_secs(1);
    let all: Vec<Scheduled> = (0..40).map(|_| message(past)).collect();
    for m in &all {
        schedule(&store, m).await;
    }
    let store = Arc::new(store);
    let start = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, start) = (Arc::clone(&store), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                claim(&*store, 7, 1, LONG).await
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.expect("a claimer panicked") {
            assert!(seen.insert(id), "{id} was claimed twice");
        }
    }
    for id in claim(&*store, 100, 1, LONG).await {
        assert!(seen.insert(id), "{id} was claimed twice");
    }
    assert_eq!(seen.len(), 40, "every message was claimed once");
}

/// `next_due` is the earliest due time among messages not claimed.
pub async fn next_due_is_the_earliest_unclaimed_due_time<S: ScheduleStore>(store: S) {
    assert_eq!(store.next_due().await.expect("next_due"), None, "empty");
    let at = now();
    let (early, late) = (message(at - Duration::from_secs(2)), message(at + LONG));
    schedule(&store, &late).await;
    schedule(&store, &early).await;
    assert_eq!(store.next_due().await.expect("next_due"), Some(early.due));
    assert_eq!(claim(&store, 10, 1, LONG).await, vec![early.id()]);
    assert_eq!(
        store.next_due().await.expect("next_due"),
        Some(late.due),
        "a claimed message is not the next one due"
    );
}

/// Every field of the envelope, a binary payload with every byte value and headers with text
/// beyond ASCII come back as they were kept.
pub async fn the_envelope_comes_back_exactly_as_kept<S: ScheduleStore>(store: S) {
    let mut m = message(now() - Duration::from_secs(1));
    m.envelope.name = "testkit.orders.place".into();
    m.envelope.kind = MessageKind::Command;
    m.envelope.causation_id = Some(Uuid::now_v7());
    m.envelope.correlation_id = Uuid::now_v7();
    m.envelope.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    m.envelope.tracestate = Some("vendor=é".into());
    m.envelope.headers = vec![
        ("tenant".into(), "acme".into()),
        ("note".into(), "café — ✓".into()),
    ];
    m.envelope.format = WireFormat::MessagePack;
    m.envelope.payload = super::every_byte(1024);
    schedule(&store, &m).await;
    let taken = store
        .claim_due(10, token(1), LONG)
        .await
        .expect("claim_due");
    assert_eq!(taken, vec![m]);
}
