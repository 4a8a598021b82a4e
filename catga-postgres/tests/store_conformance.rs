//! The store conformance suite (`catga_core::testkit::stores`) on the Postgres stores, each
//! scenario on a fresh schema of its own, dropped when the scenario's store is:
//! `cargo test -p catga-postgres --test store_conformance` lists every scenario by name
//! (`event_store::a_stale_append_is_a_conflict_and_writes_nothing`, …).

mod common;

use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore};
use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use catga_core::store::idempotency::{Claim, IdempotencyStore, ReplyKey};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use catga_postgres::{
    PostgresDeadLetterStore, PostgresEventStore, PostgresIdempotencyStore, PostgresSagaStore,
};
use common::Db;
use uuid::Uuid;

/// A store on a schema of its own: the schema is dropped after the store (fields drop in
/// order), when the scenario ends.
struct Scoped<S> {
    store: S,
    _db: Db,
}

/// A store of the scenario's own, made by `make` on a fresh schema; `None` when Postgres is
/// unreachable (the scenario is skipped, or fails under `CATGA_REQUIRE_SERVICES=1`).
async fn scoped<S>(family: &str, scenario: &str, make: fn(&Db) -> S) -> Option<Scoped<S>> {
    let db = Db::open(&format!("{family}_{scenario}")).await?;
    Some(Scoped {
        store: make(&db),
        _db: db,
    })
}

catga_core::testkit::stores::idempotency_store_conformance!(|scenario| scoped(
    "idem",
    scenario,
    |db| PostgresIdempotencyStore::new(db.pool.clone(), &db.schema)
));

catga_core::testkit::stores::dead_letter_store_conformance!(|scenario| scoped(
    "dlq",
    scenario,
    |db| PostgresDeadLetterStore::new(db.pool.clone(), &db.schema)
));

catga_core::testkit::stores::event_store_conformance!(|scenario| scoped(
    "events",
    scenario,
    |db| PostgresEventStore::new(db.pool.clone(), &db.schema)
));

catga_core::testkit::stores::saga_store_conformance!(|scenario| scoped("saga", scenario, |db| {
    PostgresSagaStore::new(db.pool.clone(), &db.schema)
}));

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

impl<S: EventStore> EventStore for Scoped<S> {
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        self.store.append(stream, expected_version, events).await
    }
    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        self.store.load(stream, from_version).await
    }
}

impl<S: SagaStore> SagaStore for Scoped<S> {
    async fn save(
        &self,
        record: &SagaRecord,
        expected_version: u64,
    ) -> Result<u64, SagaStoreError> {
        self.store.save(record, expected_version).await
    }
    async fn load(&self, id: Uuid) -> Result<Option<StoredSaga>, SagaStoreError> {
        self.store.load(id).await
    }
    async fn unfinished(
        &self,
        saga: &str,
        updated_before: Option<SystemTime>,
        limit: usize,
    ) -> Result<Vec<StoredSaga>, SagaStoreError> {
        self.store.unfinished(saga, updated_before, limit).await
    }
    async fn delete(&self, id: Uuid) -> Result<bool, SagaStoreError> {
        self.store.delete(id).await
    }
}
