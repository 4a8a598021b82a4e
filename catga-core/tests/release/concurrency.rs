//! `ConcurrencyLimit`: permits and queue places come back however the dispatch ends, in
//! per-message pools and named bulkhead groups.

use std::time::Duration;

use catga_core::behavior::ConcurrencyLimit;
use catga_core::prelude::*;
use tokio::time::Instant;

use crate::common::{Act, DbJob, ENDINGS, Ending, HELD, Job, code, end_as};

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

/// One slot and no queue: while the slot is held, any other call is shed at once, so a call
/// that succeeds proves the slot came back.
#[tokio::test(start_paused = true)]
async fn a_permit_comes_back_however_the_dispatch_ends() {
    let app = Catga::builder()
        .layer(ConcurrencyLimit::per_message(1))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("concurrency-permit-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        let next = app.send(job(&key, Act::Ok)).await;
        assert_eq!(code(&next), "ok", "{ending:?}: the slot is free");
    }
}

#[tokio::test(start_paused = true)]
async fn a_named_bulkhead_group_gets_its_slot_back() {
    let app = Catga::builder()
        .layer(ConcurrencyLimit::per_message(8).group("database", 1))
        .build()
        .unwrap();
    for ending in ENDINGS {
        let key = format!("concurrency-group-{ending:?}");
        end_as(ending, |act, ctx| {
            app.send_with(
                DbJob {
                    key: key.clone(),
                    act,
                },
                ctx,
            )
        })
        .await;
        let next = app
            .send(DbJob {
                key: key.clone(),
                act: Act::Ok,
            })
            .await;
        assert_eq!(code(&next), "ok", "{ending:?}: the group's slot is free");
    }
}

/// One slot, one queue place. A holder keeps the slot; a second call waits in the queue and
/// stops waiting (dropped, cancelled, past its deadline). Its place must be free again: a
/// third call queues (instead of being shed) and runs when the holder is done.
#[tokio::test(start_paused = true)]
async fn a_queue_place_comes_back_however_the_wait_ends() {
    let app = Catga::builder()
        .layer(ConcurrencyLimit::per_message(1).queue(1))
        .build()
        .unwrap();
    for ending in [Ending::Drop, Ending::Cancel, Ending::Deadline] {
        let key = format!("concurrency-queue-{ending:?}");
        let started = Instant::now();
        let holder = app.send(job(&key, Act::Sleep(100)));
        let queued = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
            // The second call has stopped waiting; the holder still runs.
            let third = app.send(job(&key, Act::Ok)).await;
            (third, started.elapsed())
        };
        let (held, (third, at)) = tokio::join!(holder, queued);
        assert_eq!(held.unwrap(), 1);
        assert_eq!(third.unwrap(), 2, "{ending:?}: queued, not shed");
        assert_eq!(
            at,
            Duration::from_millis(100),
            "{ending:?}: ran when the slot freed"
        );
    }
}

/// The holder panics: its slot goes to the call queued behind it.
#[tokio::test(start_paused = true)]
async fn a_panicking_holder_hands_its_slot_to_the_queue() {
    let app = Catga::builder()
        .layer(ConcurrencyLimit::per_message(1).queue(1))
        .build()
        .unwrap();
    let key = "concurrency-panicking-holder";
    let started = Instant::now();
    let holder = end_as(Ending::Panic, |act, ctx| app.send_with(job(key, act), ctx));
    let queued = async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let reply = app.send(job(key, Act::Ok)).await;
        (reply, started.elapsed())
    };
    let ((), (reply, at)) = tokio::join!(holder, queued);
    assert_eq!(reply.unwrap(), 2);
    assert_eq!(at, HELD, "ran as soon as the holder panicked");
}
