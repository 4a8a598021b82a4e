//! Where [`Caching`](super::Caching) keeps replies.
//!
//! `Caching` decides *what* is cached (which queries, for how long, under which key), runs one
//! load per key at a time in this process, and turns events into invalidations. A
//! [`CacheBackend`] decides *where* the encoded replies live: in this process's memory
//! ([`MemoryCache`](super::MemoryCache), the default) or somewhere every instance of a service
//! shares (`catga_redis::RedisCache`).
//!
//! The trait is generic rather than object-safe, like [`Behavior`](crate::Behavior): the
//! backend is part of the `Caching` type, so the in-memory default answers a hit without a
//! boxed future or a virtual call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What a [`CacheBackend`] found for a key.
#[derive(Debug)]
pub enum CacheLookup<T> {
    /// A reply stored for the key, as the query's output codec encoded it (JSON).
    Hit(Arc<[u8]>),
    /// Nothing usable. The handler runs, and its reply is offered to
    /// [`CacheBackend::put`] with this ticket.
    Miss(T),
}

/// Storage for [`Caching`](super::Caching): get, put with a TTL, and invalidation of one
/// query's replies or of one key.
///
/// **A backend never fails a query.** Its methods return no errors: a backend that cannot
/// reach its storage answers [`CacheLookup::Miss`] (the handler runs) and ignores the
/// [`put`](Self::put), logging what went wrong as it sees fit. A stored value it cannot read
/// is a miss too.
///
/// **Invalidation must not let a stale reply in.** A load that started before an
/// invalidation of its query (or key) must not be stored after it: the ticket a miss hands
/// out is how a backend tells (the in-memory backend compares a per-query generation; the
/// Redis backend stores the generation the miss saw, and a newer one hides it).
///
/// Single flight (one load per key at a time) is `Caching`'s job, in each process; a backend
/// shared by several processes may see one load per process for a key.
///
/// # Implementing
/// ```
/// use std::collections::HashMap;
/// use std::future::{Future, ready};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// use catga_core::behavior::{CacheBackend, CacheLookup};
///
/// /// Keeps every reply for ever (ignores TTLs): a sketch, not a cache to use.
/// #[derive(Debug, Default)]
/// struct Forever;
///
/// impl CacheBackend for Forever {
///     type Query = Mutex<HashMap<Vec<u8>, Arc<[u8]>>>;
///     type Ticket = ();
///
///     fn query(&self, _name: &'static str) -> Self::Query {
///         Mutex::default()
///     }
///     fn get(&self, q: &Self::Query, key: &[u8]) -> impl Future<Output = CacheLookup<()>> + Send {
///         let found = q.lock().ok().and_then(|map| map.get(key).cloned());
///         ready(found.map_or(CacheLookup::Miss(()), CacheLookup::Hit))
///     }
///     fn put(&self, q: &Self::Query, key: &[u8], reply: Arc<[u8]>, _ttl: Duration, _: ())
///         -> impl Future<Output = ()> + Send {
///         if let Ok(mut map) = q.lock() {
///             map.insert(key.to_vec(), reply);
///         }
///         ready(())
///     }
///     fn invalidate_query(&self, q: &Self::Query) -> impl Future<Output = ()> + Send + 'static {
///         if let Ok(mut map) = q.lock() {
///             map.clear();
///         }
///         ready(())
///     }
///     fn invalidate_key(&self, q: &Self::Query, key: &[u8])
///         -> impl Future<Output = ()> + Send + 'static {
///         if let Ok(mut map) = q.lock() {
///             map.remove(key);
///         }
///         ready(())
///     }
///     fn cached(&self, q: &Self::Query) -> usize {
///         q.lock().map_or(0, |map| map.len())
///     }
/// }
///
/// let caching = catga_core::behavior::Caching::with_backend(Forever);
/// # let _ = caching;
/// ```
pub trait CacheBackend: Send + Sync + 'static {
    /// The backend's state for one query (its replies, its key prefix, …), made once per
    /// query by [`query`](Self::query) and kept by `Caching`, so no call looks the query up by
    /// name.
    type Query: Send + Sync + 'static;

    /// What a miss hands to the [`put`](Self::put) of the reply loaded after it: what the
    /// backend needs to refuse a reply an invalidation made stale while it was loading.
    type Ticket: Send + 'static;

    /// The state for the query whose wire name is `name`. Called once per query and
    /// `Caching` layer, the first time the query is looked up or invalidated.
    fn query(&self, name: &'static str) -> Self::Query;

    /// The reply stored under `key` (the query's [`CacheKey`](super::CacheKey), or its JSON
    /// form), or a miss with the ticket its reply is to be stored with.
    fn get(
        &self,
        query: &Self::Query,
        key: &[u8],
    ) -> impl Future<Output = CacheLookup<Self::Ticket>> + Send;

    /// Stores `reply` under `key` for `ttl` (at least 1 ms; `Caching` passes the query's
    /// `cache_ttl`), unless the query or key was invalidated since the miss that issued
    /// `ticket`.
    fn put(
        &self,
        query: &Self::Query,
        key: &[u8],
        reply: Arc<[u8]>,
        ttl: Duration,
        ticket: Self::Ticket,
    ) -> impl Future<Output = ()> + Send;

    /// Drops every reply of the query, for every process that shares the backend.
    ///
    /// The call itself must make the invalidation hold for this process's later
    /// [`get`](Self::get)s (which may wait for it); the returned future finishes the work
    /// (tells a server, other processes). `Caching` calls this from a synchronous context
    /// (when an event is published): it polls the future once and, if that does not finish
    /// it, runs it in a task of its own on the current Tokio runtime.
    fn invalidate_query(&self, query: &Self::Query) -> impl Future<Output = ()> + Send + 'static;

    /// Drops the reply stored under `key`, for every process that shares the backend; as
    /// [`invalidate_query`](Self::invalidate_query) for one key.
    fn invalidate_key(
        &self,
        query: &Self::Query,
        key: &[u8],
    ) -> impl Future<Output = ()> + Send + 'static;

    /// How many replies of the query this process holds in memory (for a shared backend, its
    /// near-cache; 0 if it keeps none). What [`Caching::cached`](super::Caching::cached)
    /// reports.
    fn cached(&self, query: &Self::Query) -> usize;
}
