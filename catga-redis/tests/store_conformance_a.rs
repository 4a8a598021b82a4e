//! The store conformance suite (`catga_core::testkit::stores`) on the Redis idempotency and
//! dead-letter stores, each scenario on a key prefix of its own whose keys are deleted when the
//! scenario's store is dropped: `cargo test -p catga-redis --test store_conformance_a` lists
//! every scenario by name (`idempotency_store::a_release_wakes_a_waiter_which_then_claims`, …).

mod common;

use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore};
use catga_core::store::idempotency::{Claim, IdempotencyStore, ReplyKey};
use catga_redis::store::RedisStores;
use common::scoped::{Scoped, scoped};
use uuid::Uuid;

catga_core::testkit::stores::idempotency_store_conformance!(|scenario| async move {
    scoped(&format!("idem:{scenario}"), RedisStores::idempotency).await
});

catga_core::testkit::stores::dead_letter_store_conformance!(|scenario| async move {
    scoped(&format!("dlq:{scenario}"), RedisStores::dead_letters).await
});

// `Scoped` is its store: each method passes straight through.

impl<S: IdempotencyStore> IdempotencyStore for Scoped<S> {
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        self.store.claim(key, lease).await
    }
    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        self.store.complete(key, reply, ttl).await
    }
    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        self.store.release(key).await
    }
    fn release_now(&self, key: &ReplyKey) -> bool {
        self.store.release_now(key)
    }
    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        self.store.wait(key, timeout).await
    }
}

impl<S: DeadLetterStore> DeadLetterStore for Scoped<S> {
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        self.store.put(record).await
    }
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        self.store.list(limit).await
    }
    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        self.store.take(id).await
    }
    async fn count(&self) -> Result<usize, BoxError> {
        self.store.count().await
    }
}
