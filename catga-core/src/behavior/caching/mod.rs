//! Caching query replies: a TTL, invalidation by events, one load for concurrent misses.
//!
//! [`Caching`] decides what is cached and when it goes stale; a [`CacheBackend`] keeps the
//! encoded replies: [`MemoryCache`] (the default) in this process, or a store the instances of
//! a service share (`catga_redis::RedisCache`). Single flight (`flight.rs`) is the behaviour's,
//! whatever the backend.

mod backend;
mod flight;
mod memory;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;

use self::flight::{Begin, Flights};
use super::per_message::PerMessage;
use crate::context::Context;
use crate::error::Error;
use crate::message::AnyMessage;
use crate::message::{MessageInfo, MessageKind};
use crate::payload::Payload;
use crate::pipeline::{Behavior, Next};
use crate::policy::Skip;
use crate::registry::MessageDescriptor;

pub use self::backend::{CacheBackend, CacheLookup};
pub use self::memory::{MemoryCache, MemoryQuery};

/// The key a query declares for caching, instead of its JSON form (which is the default).
///
/// ```
/// use catga_core::behavior::CacheKey;
///
/// struct GetOrder { id: u64, trace: String }
///
/// impl CacheKey for GetOrder {
///     fn cache_key(&self) -> String {
///         self.id.to_string() // `trace` does not change the answer
///     }
/// }
/// ```
pub trait CacheKey {
    /// The key; queries with equal keys have equal replies.
    fn cache_key(&self) -> String;
}

/// Caches the replies of queries that ask for it, so repeated reads skip the handler.
///
/// A query is cached when it declares `#[query(cache_ttl = "30s")]` (or, with
/// [`Caching::default_ttl`], every query). Its key is its [`CacheKey`] or its JSON form.
/// Replies are dropped when their TTL ends, when an event the query names in
/// `invalidated_by(OrderPlaced, …)` is published (through this application, even with no
/// handler, or by any process on the application's transport: every instance of every
/// service that serves sees it, not only the one instance its service's share of the event
/// goes to), or on [`Caching::invalidate`]. After a transport reconnects, the replies of
/// every query with `invalidated_by` are dropped, since an invalidation may have been missed.
/// Concurrent misses of one key run the handler once and share its reply (single flight); a
/// load that ends without a reply, however it ends (an error, a deadline, a cancellation, a
/// dropped future, a panic), wakes whoever waits for it, and the first of them loads instead.
/// Errors are not cached. A stored reply that does not decode is dropped (with a warning) and
/// the handler runs. `skip(caching)` exempts a query;
/// `local` queries are not cached (their replies have no stored form).
///
/// Replies live in this process's memory ([`MemoryCache`]) unless another [`CacheBackend`]
/// is given with [`Caching::with_backend`], such as `catga_redis::RedisCache`, which the
/// instances of a service share.
///
/// ```rust,standalone_crate
/// use catga_core::prelude::*;
/// use catga_core::behavior::Caching;
///
/// #[event]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct PriceChanged { pub sku: u64 }
///
/// #[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged))]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct GetPrice { pub sku: u64 }
///
/// #[handler]
/// async fn price(q: GetPrice) -> Result<u64, std::io::Error> { Ok(q.sku * 100) }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Catga::builder().layer(Caching::new()).build()?;
/// assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // runs the handler
/// assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // from the cache
/// app.publish(PriceChanged { sku: 3 }).await?;            // drops GetPrice's replies
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Caching<B: CacheBackend = MemoryCache> {
    backend: B,
    default_ttl: Option<Duration>,
    caches: PerMessage<QueryState<B::Query>>,
    /// Event wire name → the queries it invalidates, from every query's `invalidated_by`.
    invalidates: OnceLock<HashMap<&'static str, Vec<&'static MessageInfo>>>,
}

impl Default for Caching {
    fn default() -> Self {
        Self::new()
    }
}

impl Caching {
    /// Caches the queries that declare `cache_ttl` in this process's memory, at most 10,000
    /// replies per query.
    pub fn new() -> Self {
        Caching::with_backend(MemoryCache::new())
    }

    /// The most replies kept per query; beyond it, expired replies go first, then any.
    pub fn max_entries(mut self, max: usize) -> Self {
        self.backend = self.backend.max_entries(max);
        self
    }
}

impl<B: CacheBackend> Caching<B> {
    /// Caches the queries that declare `cache_ttl` in `backend`.
    ///
    /// ```
    /// use catga_core::behavior::{Caching, MemoryCache};
    ///
    /// let caching = Caching::with_backend(MemoryCache::new().max_entries(100));
    /// # let _ = caching;
    /// ```
    pub fn with_backend(backend: B) -> Self {
        Caching {
            backend,
            default_ttl: None,
            caches: PerMessage::default(),
            invalidates: OnceLock::new(),
        }
    }

    /// The backend that keeps the replies.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Also caches queries without `cache_ttl`, for `ttl`.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Drops every cached reply of `Q`, for every process sharing the backend. This
    /// process's next lookups miss at once; a shared backend tells the others in the
    /// background (on the current Tokio runtime).
    pub fn invalidate<Q: crate::Query>(&self) {
        self.invalidate_query(Q::info());
    }

    /// Drops the cached reply of one query value (the reply stored under its key), for every
    /// process sharing the backend; as [`invalidate`](Self::invalidate) for one key.
    pub fn invalidate_key<Q: crate::Query>(&self, query: &Q) {
        let info = Q::info();
        if let (Some(state), Some(key)) = (self.state(info), cache_key(query)) {
            detach(self.backend.invalidate_key(&state.backend, &key));
        }
    }

    /// How many replies of `Q` this process holds in memory (for a shared backend, in its
    /// near-cache).
    pub fn cached<Q: crate::Query>(&self) -> usize {
        self.caches
            .get(Q::info())
            .map_or(0, |state| self.backend.cached(&state.backend))
    }

    /// How long `info`'s replies are kept, if they are cached at all.
    fn ttl(&self, info: &'static MessageInfo) -> Option<Duration> {
        let ttl = info.policy().cache_ttl.or(self.default_ttl)?;
        let cached = info.kind() == MessageKind::Query
            && info.is_wire()
            && !info.policy().skip.contains(Skip::CACHING);
        cached.then_some(ttl)
    }

    /// The state of a query this layer caches, created on first use; `None` for a query it
    /// does not cache.
    fn state(&self, info: &'static MessageInfo) -> Option<&QueryState<B::Query>> {
        self.ttl(info)?;
        Some(self.caches.get_or_init(info, || QueryState {
            backend: self.backend.query(info.name()),
            flights: Flights::new(),
            hits: metrics::counter!("catga_cache_hits_total", "message" => info.name()),
            misses: metrics::counter!("catga_cache_misses_total", "message" => info.name()),
            invalidations: metrics::counter!(
                "catga_cache_invalidations_total", "message" => info.name()
            ),
        }))
    }

    fn invalidate_query(&self, info: &'static MessageInfo) {
        // A shared backend may hold replies other processes stored even if this one never
        // looked the query up: the state is created to invalidate them.
        if let Some(state) = self.state(info) {
            state.invalidations.increment(1);
            detach(self.backend.invalidate_query(&state.backend));
        }
    }

    /// Drops the replies of every query `event` invalidates.
    fn invalidate_by(&self, event: &str) {
        let map = self.invalidation_map();
        if map.is_empty() {
            return;
        }
        if let Some(queries) = map.get(event) {
            for query in queries {
                self.invalidate_query(query);
            }
        }
    }

    fn invalidation_map(&self) -> &HashMap<&'static str, Vec<&'static MessageInfo>> {
        self.invalidates.get_or_init(|| {
            let mut map: HashMap<&'static str, Vec<&'static MessageInfo>> = HashMap::new();
            for descriptor in inventory::iter::<MessageDescriptor> {
                let query = (descriptor.info)();
                for event in query.policy().invalidated_by {
                    map.entry(event().name()).or_default().push(query);
                }
            }
            map
        })
    }
}

/// One query's state in a `Caching` layer.
struct QueryState<Q> {
    backend: Q,
    flights: Flights,
    /// Registered once: a labelled counter looked up per call costs more than a hit.
    hits: metrics::Counter,
    misses: metrics::Counter,
    invalidations: metrics::Counter,
}

/// The key a query is cached under: its [`CacheKey`], else its JSON form.
fn cache_key(msg: &dyn AnyMessage) -> Option<Vec<u8>> {
    match msg.cache_key() {
        Some(key) => Some(key.into_bytes()),
        None => msg.encode_json().ok(),
    }
}

/// How many times a miss goes back to look again because a load of its shard ended
/// meanwhile, before it loads anyway.
const LOOK_AGAIN: u32 = 2;

/// Finishes an invalidation's work: at once if it can, else in a task of its own.
fn detach(work: impl Future<Output = ()> + Send + 'static) {
    let mut work = Box::pin(work);
    if work.as_mut().now_or_never().is_some() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(work)),
        Err(_) => tracing::warn!(target: "catga::cache",
            "no Tokio runtime to finish a cache invalidation on; other processes may keep \
             serving the replies it dropped until their TTL ends"),
    }
}

impl<B: CacheBackend> Behavior for Caching<B> {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        _ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        let (Some(ttl), Some(state)) = (self.ttl(info), self.state(info)) else {
            return next.run(msg).await;
        };
        let Some(key) = cache_key(msg.message()) else {
            return next.run(msg).await;
        };
        let mut looked_again = 0;
        let mut dropped_unreadable = false;
        let (guard, ticket) = loop {
            let seen = state.flights.seen(&key);
            match self.backend.get(&state.backend, &key).await {
                CacheLookup::Hit(reply) => match P::decode_output(info, &reply) {
                    Ok(output) => {
                        state.hits.increment(1);
                        return Ok(output);
                    }
                    Err(error) => {
                        tracing::warn!(target: "catga::cache", message = info.name(),
                            error = &error as &dyn std::error::Error,
                            "a cached reply does not decode; it is dropped and the handler runs");
                        if dropped_unreadable {
                            // The backend keeps answering it: run without caching.
                            state.misses.increment(1);
                            return next.run(msg).await;
                        }
                        dropped_unreadable = true;
                        self.backend.invalidate_key(&state.backend, &key).await;
                    }
                },
                CacheLookup::Miss(ticket) => {
                    let seen = (looked_again < LOOK_AGAIN).then_some(seen);
                    match state.flights.begin(&key, seen) {
                        Begin::Load(guard) => break (guard, ticket),
                        Begin::Wait(done) => state.flights.wait(&key, done).await,
                        Begin::Again => looked_again += 1,
                    }
                }
            }
        };
        state.misses.increment(1);
        let result = next.run(msg).await;
        if let Ok(output) = &result
            && let Ok(reply) = P::encode_output(info, output)
        {
            self.backend
                .put(&state.backend, &key, Arc::from(reply), ttl, ticket)
                .await;
        }
        drop(guard);
        result
    }

    fn observe_publish(&self, event: &dyn AnyMessage, _ctx: &Context) {
        self.invalidate_by(event.info().name());
    }

    fn observed_events(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.invalidation_map().keys().copied().collect();
        names.sort_unstable();
        names
    }

    fn observe_remote(&self, name: &str) {
        self.invalidate_by(name);
    }
}
