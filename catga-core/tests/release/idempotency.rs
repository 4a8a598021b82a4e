//! `Idempotency`: the claim goes back however the attempt ends (repro `p06b_idempotency_lease`).

use std::time::Duration;

use catga_core::Layer;
use catga_core::behavior::{Idempotency, Timeout};
use catga_core::prelude::*;
use tokio::time::Instant;

use crate::common::{Act, ENDINGS, HELD, Job, code, end_as, on_own_thread, runs};

const LEASE: Duration = Duration::from_secs(60);

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

/// The repro, first half: the caller's deadline drops the first call mid-handler; the repeat
/// must not wait for the 3 s lease.
#[tokio::test(start_paused = true)]
async fn the_repeat_after_a_caller_timeout_runs_without_waiting_for_the_lease() {
    let lease = Duration::from_secs(3);
    let app = Catga::builder()
        .layer(Idempotency::default().lease(lease))
        .build()
        .unwrap();
    let key = "p06b-caller-timeout";
    let first = app
        .send_with(
            job(key, Act::Sleep(30)),
            Context::new().with_timeout(Duration::from_millis(5)),
        )
        .await;
    assert_eq!(code(&first), "timeout");
    let asked = Instant::now();
    let repeat = app.send(job(key, Act::Ok)).await;
    assert!(
        asked.elapsed() < lease,
        "the repeat waited {:?}",
        asked.elapsed()
    );
    assert_eq!(repeat.unwrap(), 2, "the repeat ran the handler itself");
    assert_eq!(runs(key), 2);
}

/// The repro, second half: a first call whose future the caller dropped; a repeat with its
/// own 1 s deadline (shorter than the 3 s lease) succeeds. (It used to wait for the claim
/// and, once past its deadline, spin: see `a_waiting_repeat_times_out_at_its_deadline`.)
#[test]
fn a_repeat_with_its_own_deadline_after_a_dropped_first_call_succeeds() {
    let repeat = on_own_thread(|| async {
        let app = Catga::builder()
            .layer(Idempotency::default().lease(Duration::from_secs(3)))
            .build()
            .unwrap();
        let key = "p06b-dropped";
        let first = app.send(job(key, Act::Sleep(30)));
        let dropped = tokio::time::timeout(Duration::from_millis(5), first).await;
        assert!(dropped.is_err(), "the first call was still running");
        let ctx = Context::new().with_timeout(Duration::from_secs(1));
        app.send_with(job(key, Act::Ok), ctx).await
    });
    assert_eq!(repeat.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_claim_is_released_however_the_attempt_ends() {
    let app = Catga::builder()
        .layer(Idempotency::default().lease(LEASE))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("idempotency-claim-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        let asked = Instant::now();
        let repeat = app.send(job(&key, Act::Ok)).await;
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "{ending:?}: the repeat waited"
        );
        assert_eq!(repeat.unwrap(), 2, "{ending:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_releases_its_claim() {
    let app = Catga::builder()
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let key = "idempotency-failed";
    assert_eq!(code(&app.send(job(key, Act::Fail)).await), "handler");
    assert_eq!(app.send(job(key, Act::Ok)).await.unwrap(), 2);
}

/// A repeat already waiting for the first attempt's reply goes on as soon as that attempt
/// ends, and runs the handler itself.
#[tokio::test(start_paused = true)]
async fn a_waiting_repeat_goes_on_when_the_holder_ends() {
    let app = Catga::builder()
        .layer(Idempotency::default().lease(LEASE))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("idempotency-waiter-{ending:?}");
        let started = Instant::now();
        let holder = end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx));
        let waiter = async {
            tokio::time::sleep(HELD / 2).await;
            let reply = app.send(job(&key, Act::Ok)).await;
            (reply, started.elapsed())
        };
        let ((), (reply, waited)) = tokio::join!(holder, waiter);
        assert_eq!(reply.unwrap(), 2, "{ending:?}");
        assert_eq!(
            waited, HELD,
            "{ending:?}: the waiter went on when the holder ended"
        );
    }
}

/// A panic in a spawned dispatch (how a server runs one): the task ends with a `JoinError`,
/// the claim is back.
#[tokio::test(start_paused = true)]
async fn a_panic_in_a_spawned_dispatch_releases_the_claim() {
    let app = Catga::builder()
        .layer(Idempotency::default().lease(LEASE))
        .build()
        .unwrap();
    let key = "idempotency-spawned-panic";
    let spawned = app.clone();
    let joined = tokio::spawn(async move { spawned.send(job(key, Act::Panic)).await }).await;
    assert!(joined.unwrap_err().is_panic());
    let asked = Instant::now();
    assert_eq!(app.send(job(key, Act::Ok)).await.unwrap(), 2);
    assert_eq!(asked.elapsed(), Duration::ZERO);
}

/// A `Timeout` layer outside `Idempotency` drops it mid-handler; one inside makes the
/// handler fail. Either way the claim goes back.
#[tokio::test(start_paused = true)]
async fn a_timeout_layer_on_either_side_releases_the_claim() {
    let outside = Catga::builder()
        .layer(Timeout::new(HELD))
        .layer(Idempotency::default().lease(LEASE))
        .build()
        .unwrap();
    repeat_after_a_timeout(&outside, "idempotency-timeout-outside").await;
    let inside = Catga::builder()
        .layer(Idempotency::default().lease(LEASE))
        .layer(Timeout::new(HELD))
        .build()
        .unwrap();
    repeat_after_a_timeout(&inside, "idempotency-timeout-inside").await;
}

async fn repeat_after_a_timeout<L: Layer>(app: &Catga<L>, key: &str) {
    assert_eq!(code(&app.send(job(key, Act::Hang)).await), "timeout");
    let asked = Instant::now();
    assert_eq!(app.send(job(key, Act::Ok)).await.unwrap(), 2, "{key}");
    assert_eq!(asked.elapsed(), Duration::ZERO, "{key}: the repeat waited");
}

/// A repeat that waits for a first attempt still running, and whose own deadline passes
/// first, times out at its deadline. (It used to spin: past the deadline every wait returned
/// at once, so the loop never yielded to the timer that would end it.) Run on a thread of
/// its own, so that a spin fails the test instead of hanging the suite.
#[test]
fn a_waiting_repeat_times_out_at_its_deadline() {
    let (first, (repeat, at), again) = on_own_thread(|| async {
        let app = Catga::builder()
            .layer(Idempotency::default().lease(LEASE))
            .build()
            .unwrap();
        let key = "idempotency-waiter-deadline";
        let started = Instant::now();
        let holder = app.send(job(key, Act::Sleep(100)));
        let repeat = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let ctx = Context::new().with_timeout(HELD);
            let timed_out = app.send_with(job(key, Act::Ok), ctx).await;
            (code(&timed_out).to_string(), started.elapsed())
        };
        let (first, repeat) = tokio::join!(holder, repeat);
        let again = app.send(job(key, Act::Ok)).await;
        (first.unwrap(), repeat, again.unwrap())
    });
    assert_eq!(first, 1);
    assert_eq!(repeat, "timeout");
    assert_eq!(at, Duration::from_millis(1) + HELD);
    assert_eq!(again, 1, "the first attempt's reply, recorded");
}
