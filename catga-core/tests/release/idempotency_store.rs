//! `Idempotency` over a store that cannot release in place (as a networked one): the claim
//! is released by a task spawned on the runtime, and a reply being recorded when the call
//! goes away is still recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::BoxError;
use catga_core::behavior::Idempotency;
use catga_core::prelude::*;
use catga_core::store::idempotency::{Claim, IdempotencyStore, MemoryIdempotencyStore, ReplyKey};
use tokio::time::Instant;

use crate::common::{Act, ENDINGS, Job, code, end_as, runs};

/// The in-memory store behind awaits, as a store on a network: no `release_now`, and
/// `complete` takes `write_delay`.
#[derive(Default)]
struct Networked {
    inner: MemoryIdempotencyStore,
    write_delay: Duration,
    releases: Arc<AtomicU32>,
}

impl IdempotencyStore for Networked {
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        tokio::task::yield_now().await;
        self.inner.claim(key, lease).await
    }

    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        tokio::time::sleep(self.write_delay).await;
        self.inner.complete(key, reply, ttl).await
    }

    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        tokio::task::yield_now().await;
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(key).await
    }

    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        self.inner.wait(key, timeout).await
    }
}

fn job(key: &str, act: Act) -> Job {
    Job {
        key: key.to_string(),
        act,
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_cannot_release_in_place_is_released_by_a_spawned_task() {
    let releases = Arc::new(AtomicU32::new(0));
    let store = Networked {
        releases: releases.clone(),
        ..Networked::default()
    };
    let lease = Duration::from_secs(60);
    let app = Catga::builder()
        .layer(Idempotency::new(store).lease(lease))
        .build()
        .unwrap();
    for (n, ending) in (1..).zip(ENDINGS) {
        let key = format!("networked-claim-{ending:?}");
        end_as(ending, |act, ctx| app.send_with(job(&key, act), ctx)).await;
        let asked = Instant::now();
        let repeat = app.send(job(&key, Act::Ok)).await;
        assert!(
            asked.elapsed() < lease,
            "{ending:?}: the repeat waited for the lease"
        );
        assert_eq!(repeat.unwrap(), 2, "{ending:?}");
        assert_eq!(
            releases.load(Ordering::SeqCst),
            n,
            "{ending:?}: one release each"
        );
    }
}

/// The handler succeeded and its reply was being written when the caller gave up: the write
/// finishes in the background, and a repeat gets that reply without running the handler.
#[tokio::test(start_paused = true)]
async fn a_reply_being_recorded_when_the_call_goes_away_is_still_recorded() {
    let store = Networked {
        write_delay: Duration::from_millis(10),
        ..Networked::default()
    };
    let app = Catga::builder()
        .layer(Idempotency::new(store))
        .build()
        .unwrap();
    let key = "networked-reply";
    let dropped = tokio::time::timeout(Duration::from_millis(5), app.send(job(key, Act::Ok))).await;
    assert!(
        dropped.is_err(),
        "dropped while the reply was being written"
    );
    assert_eq!(runs(key), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let repeat = app.send(job(key, Act::Ok)).await;
    assert_eq!(repeat.unwrap(), 1, "the first run's reply");
    assert_eq!(runs(key), 1, "the handler did not run again");
    assert_eq!(
        code(&app.send(job(key, Act::Fail)).await),
        "ok",
        "still that reply"
    );
}
