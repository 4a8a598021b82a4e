//! The store conformance suite (`catga_core::testkit::stores`) on the Redis event and saga
//! stores, each scenario on a key prefix of its own whose keys are deleted when the scenario's
//! store is dropped: `cargo test -p catga-redis --test store_conformance_b` lists every
//! scenario by name (`event_store::a_stale_append_is_a_conflict_and_writes_nothing`, …).

mod common;

use std::time::SystemTime;

use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use catga_core::store::saga::{SagaRecord, SagaStore, SagaStoreError, StoredSaga};
use catga_redis::store::RedisStores;
use common::scoped::{Scoped, scoped};
use uuid::Uuid;

catga_core::testkit::stores::event_store_conformance!(|scenario| scoped(
    scenario,
    RedisStores::events
));

catga_core::testkit::stores::saga_store_conformance!(|scenario| scoped(
    scenario,
    RedisStores::sagas
));

// `Scoped` is its store: each method passes straight through.

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
