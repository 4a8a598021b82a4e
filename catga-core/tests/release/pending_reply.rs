//! `Idempotency` offering its reply to a unit of work inside it (`PendingReply`): a unit that
//! records it leaves the behaviour nothing to send, one that does not leaves it to the
//! behaviour, and a reply is offered only to the dispatch it belongs to and only by a store
//! that asks for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::behavior::Idempotency;
use catga_core::pipeline::{Behavior, Next};
use catga_core::prelude::*;
use catga_core::store::idempotency::{
    Claim, IdempotencyStore, MemoryIdempotencyStore, PendingReply, ReplyKey,
};
use catga_core::{BoxError, Payload};

use crate::common::{Act, Job, runs};

/// The in-memory store, counting the behaviour's completions; `in_unit` is what it answers to
/// `completes_in_unit_of_work`.
#[derive(Default)]
struct Store {
    inner: MemoryIdempotencyStore,
    in_unit: bool,
    completes: AtomicU32,
}

impl IdempotencyStore for Store {
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        self.inner.claim(key, lease).await
    }

    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete(key, reply, ttl).await
    }

    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        self.inner.release(key).await
    }

    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        self.inner.wait(key, timeout).await
    }

    fn completes_in_unit_of_work(&self) -> bool {
        self.in_unit
    }
}

/// A unit of work's commit, as an adapter writes it: after the handler, it records the
/// pending reply of its own dispatch in the store it recognises, and says so.
#[derive(Clone, Default)]
struct Unit {
    /// Whether it records (`false`: it only looks).
    records: bool,
    /// Pending replies it was offered.
    offered: Arc<AtomicU32>,
}

impl Behavior for Unit {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let (info, handler) = (msg.info(), msg.handler());
        let output = next.run(msg).await?;
        assert!(
            PendingReply::current(info.name(), handler, uuid::Uuid::now_v7()).is_none(),
            "another dispatch's id finds nothing"
        );
        assert!(
            PendingReply::current("another.message", handler, ctx.message_id()).is_none(),
            "nor another message's name"
        );
        if let Some(pending) = PendingReply::current(info.name(), handler, ctx.message_id()) {
            self.offered.fetch_add(1, Ordering::SeqCst);
            let store = pending.store::<Store>().expect("the behaviour's store");
            assert!(pending.store::<MemoryIdempotencyStore>().is_none());
            if self.records {
                let reply = P::encode_output(info, &output).expect("encodes");
                store
                    .inner
                    .complete(pending.key(), &reply, pending.ttl())
                    .await
                    .expect("recorded");
                pending.recorded();
                assert!(
                    PendingReply::current(info.name(), handler, ctx.message_id()).is_none(),
                    "a recorded reply is offered no more"
                );
            }
        }
        Ok(output)
    }
}

fn job(key: &str) -> Job {
    Job {
        key: key.to_string(),
        act: Act::Ok,
    }
}

#[tokio::test]
async fn a_unit_that_records_the_reply_leaves_the_behaviour_nothing_to_send() {
    let store = Store {
        in_unit: true,
        ..Store::default()
    };
    let unit = Unit {
        records: true,
        ..Unit::default()
    };
    let idempotency = Arc::new(Idempotency::new(store));
    let app = Catga::builder()
        .layer(Arc::clone(&idempotency))
        .layer(unit.clone())
        .build()
        .unwrap();
    let key = "pending-recorded";
    assert_eq!(app.send(job(key)).await.unwrap(), 1);
    assert_eq!(unit.offered.load(Ordering::SeqCst), 1);
    assert_eq!(idempotency.store().completes.load(Ordering::SeqCst), 0);
    assert_eq!(app.send(job(key)).await.unwrap(), 1, "the recorded reply");
    assert_eq!(runs(key), 1, "the repeat did not run the handler");
}

#[tokio::test]
async fn a_unit_that_does_not_record_it_leaves_it_to_the_behaviour() {
    let store = Store {
        in_unit: true,
        ..Store::default()
    };
    let unit = Unit::default();
    let idempotency = Arc::new(Idempotency::new(store));
    let app = Catga::builder()
        .layer(Arc::clone(&idempotency))
        .layer(unit.clone())
        .build()
        .unwrap();
    let key = "pending-not-recorded";
    assert_eq!(app.send(job(key)).await.unwrap(), 1);
    assert_eq!(unit.offered.load(Ordering::SeqCst), 1);
    assert_eq!(idempotency.store().completes.load(Ordering::SeqCst), 1);
    assert_eq!(app.send(job(key)).await.unwrap(), 1);
    assert_eq!(runs(key), 1);
}

#[tokio::test]
async fn a_store_that_does_not_ask_is_offered_nothing() {
    let unit = Unit {
        records: true,
        ..Unit::default()
    };
    let idempotency = Arc::new(Idempotency::new(Store::default()));
    let app = Catga::builder()
        .layer(Arc::clone(&idempotency))
        .layer(unit.clone())
        .build()
        .unwrap();
    let key = "pending-not-asked";
    assert_eq!(app.send(job(key)).await.unwrap(), 1);
    assert_eq!(unit.offered.load(Ordering::SeqCst), 0);
    assert_eq!(idempotency.store().completes.load(Ordering::SeqCst), 1);
}
