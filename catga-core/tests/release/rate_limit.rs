//! `RateLimit`: a permit reserved by a call that stops waiting for it goes back when it can
//! (it was the last one reserved); a permit that was used stays used. Nothing else is held.

use std::time::Duration;

use catga_core::Layer;
use catga_core::behavior::RateLimit;
use catga_core::policy::Rate;
use catga_core::prelude::*;
use tokio::time::Instant;

use crate::common::{Act, Ending, HELD, Job, code, end_as};

const SECOND: Duration = Duration::from_secs(1);

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

/// One permit a second, no burst; a call may wait up to 5 s for its permit.
fn app() -> Catga<impl Layer> {
    Catga::builder()
        .layer(
            RateLimit::per_message(Rate::per_second(1))
                .burst(1)
                .wait_up_to(Duration::from_secs(5)),
        )
        .build()
        .unwrap()
}

/// A takes the permit; B reserves the next (at 1 s) and stops waiting; C, arriving after,
/// gets B's permit at 1 s instead of the one after it at 2 s.
#[tokio::test(start_paused = true)]
async fn a_reserved_permit_comes_back_when_its_waiter_stops_waiting() {
    for ending in [Ending::Drop, Ending::Cancel] {
        let app = app();
        let key = format!("rate-reserved-{ending:?}");
        let started = Instant::now();
        assert_eq!(app.send(job(&key, Act::Ok)).await.unwrap(), 1);
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        assert_eq!(started.elapsed(), HELD);
        assert_eq!(app.send(job(&key, Act::Ok)).await.unwrap(), 2);
        assert_eq!(started.elapsed(), SECOND, "{ending:?}: C took B's permit");
    }
}

/// A call whose deadline comes before its permit is refused at once, reserving nothing.
#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_comes_first_reserves_nothing() {
    let app = app();
    let key = "rate-deadline-first";
    let started = Instant::now();
    app.send(job(key, Act::Ok)).await.unwrap();
    let refused = app
        .send_with(job(key, Act::Ok), Context::new().with_timeout(HELD))
        .await;
    assert_eq!(code(&refused), "rate_limited");
    app.send(job(key, Act::Ok)).await.unwrap();
    assert_eq!(started.elapsed(), SECOND);
}

/// A permit that was used stays used, whatever its handler then does.
#[tokio::test(start_paused = true)]
async fn a_used_permit_is_not_given_back_when_its_handler_panics() {
    let app = app();
    let key = "rate-used";
    let started = Instant::now();
    end_as(Ending::Panic, |act, ctx| app.send_with(job(key, act), ctx)).await;
    app.send(job(key, Act::Ok)).await.unwrap();
    assert_eq!(
        started.elapsed(),
        SECOND,
        "the panicking call used the first permit"
    );
}

/// B reserved 1 s, then C reserved 2 s; B stops waiting. Undoing B's reservation would let C
/// and the next call through closer than the rate allows, so it stays taken: D gets 3 s.
#[tokio::test(start_paused = true)]
async fn an_earlier_reservation_is_not_given_back_out_of_order() {
    let app = app();
    let key = "rate-out-of-order";
    let started = Instant::now();
    app.send(job(key, Act::Ok)).await.unwrap();
    let b = tokio::time::timeout(HELD, app.send(job(key, Act::Ok)));
    let c = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        app.send(job(key, Act::Ok)).await.unwrap();
        started.elapsed()
    };
    let d = async {
        tokio::time::sleep(HELD * 2).await;
        app.send(job(key, Act::Ok)).await.unwrap();
        started.elapsed()
    };
    let (b, c, d) = tokio::join!(b, c, d);
    assert!(b.is_err(), "B stopped waiting");
    assert_eq!(c, SECOND * 2);
    assert_eq!(d, SECOND * 3);
}
