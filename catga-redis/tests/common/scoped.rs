//! A store of one conformance scenario (`catga_core::testkit::stores`) on a slice of its own:
//! the slice's keys are deleted when the scenario ends, also when it failed. Each suite's
//! binary implements the store's trait for [`Scoped`] by passing each method through.

use catga_redis::store::RedisStores;

use super::slice::Slice;

/// A store on a key prefix of its own: the prefix's keys are deleted after the store (fields
/// drop in order).
pub struct Scoped<S> {
    pub store: S,
    _slice: Slice,
}

/// A store of the scenario `test`'s own, made by `make` on a fresh prefix; `None` when Redis is
/// unreachable (the scenario is skipped, or fails under `CATGA_REQUIRE_SERVICES=1`).
pub async fn scoped<S>(test: &str, make: fn(&RedisStores) -> S) -> Option<Scoped<S>> {
    let slice = Slice::open(test).await?;
    Some(Scoped {
        store: make(&slice.stores),
        _slice: slice,
    })
}
