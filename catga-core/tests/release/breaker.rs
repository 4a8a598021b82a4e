//! `CircuitBreaker`: a call that never finishes cannot leave the circuit refusing. A
//! half-open probe's slot comes back however the probe ends; a probe or call cut off by its
//! deadline counts as the timeout it is.

use std::sync::Arc;
use std::time::Duration;

use catga_core::Layer;
use catga_core::behavior::{CircuitBreaker, CircuitState, Trip};
use catga_core::prelude::*;

use crate::common::{Act, ENDINGS, Ending, Job, Shared, code, end_as};

const COOL_DOWN: Duration = Duration::from_secs(1);

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

fn app_with(breaker: CircuitBreaker) -> (Catga<impl Layer>, Arc<CircuitBreaker>) {
    let breaker = Arc::new(breaker);
    let app = Catga::builder()
        .layer(Shared(breaker.clone()))
        .build()
        .unwrap();
    (app, breaker)
}

/// Trips the circuit and waits out the cool-down: the next call is a probe.
async fn half_open<L: Layer>(app: &Catga<L>, breaker: &CircuitBreaker, key: &str) {
    assert_eq!(code(&app.send(job(key, Act::Fail)).await), "handler");
    assert_eq!(breaker.state::<Job>(), CircuitState::Open);
    tokio::time::advance(COOL_DOWN).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_finishes_does_not_leave_the_circuit_refusing() {
    for ending in ENDINGS {
        let (app, breaker) =
            app_with(CircuitBreaker::new(Trip::ConsecutiveFailures(1)).cool_down(COOL_DOWN));
        let key = format!("breaker-probe-{ending:?}");
        half_open(&app, &breaker, &key).await;
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        let expected = match ending {
            // A timeout is a failure (it is retryable): the circuit re-opens.
            Ending::Deadline => CircuitState::Open,
            // Dropped or cancelled by the caller: no outcome. A panic is not a failure by
            // the default predicate (it is not retryable).
            Ending::Drop | Ending::Cancel | Ending::Panic => CircuitState::HalfOpen,
        };
        assert_eq!(breaker.state::<Job>(), expected, "{ending:?}");
        if expected == CircuitState::Open {
            tokio::time::advance(COOL_DOWN).await;
        }
        // The probe slot is free: the next call is let through as the probe and closes it.
        assert_eq!(
            code(&app.send(job(&key, Act::Ok)).await),
            "ok",
            "{ending:?}"
        );
        assert_eq!(breaker.state::<Job>(), CircuitState::Closed, "{ending:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_probe_counts_when_the_predicate_counts_panics() {
    let (app, breaker) = app_with(
        CircuitBreaker::new(Trip::ConsecutiveFailures(1))
            .cool_down(COOL_DOWN)
            .failure_if(|e| e.is_retryable() || e.code() == "panic"),
    );
    let key = "breaker-panicking-probe";
    half_open(&app, &breaker, key).await;
    end_as(Ending::Panic, |act, ctx| app.send_with(job(key, act), ctx)).await;
    assert_eq!(breaker.state::<Job>(), CircuitState::Open);
    tokio::time::advance(COOL_DOWN).await;
    assert_eq!(code(&app.send(job(key, Act::Ok)).await), "ok");
    assert_eq!(breaker.state::<Job>(), CircuitState::Closed);
}

/// Closed: calls cut off at their deadline count as timeouts (a hanging dependency trips
/// the breaker even when nothing inside it times out); dropped and cancelled calls count
/// neither way.
#[tokio::test(start_paused = true)]
async fn a_closed_circuit_counts_calls_cut_off_by_their_deadline() {
    for ending in ENDINGS {
        let (app, breaker) =
            app_with(CircuitBreaker::new(Trip::ConsecutiveFailures(2)).cool_down(COOL_DOWN));
        let key = format!("breaker-closed-{ending:?}");
        for _ in 0..2 {
            end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        }
        let expected = if ending == Ending::Deadline {
            CircuitState::Open
        } else {
            CircuitState::Closed
        };
        assert_eq!(breaker.state::<Job>(), expected, "{ending:?}");
    }
}
