//! A Redis backend for catga's `Caching` behaviour: one cache shared by every instance of a
//! service, with a near-cache in each instance's memory in front of it.
//!
//! [`RedisCache`] implements [`CacheBackend`]; give it to
//! [`Caching::with_backend`](catga_core::behavior::Caching::with_backend). A reply one
//! instance cached serves every instance, and an `invalidated_by` event handled by any one
//! instance drops the query's replies for all of them.
//!
//! ```no_run
//! use catga_core::prelude::*;
//! use catga_core::behavior::Caching;
//! use catga_redis::RedisCache;
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct PriceChanged { pub sku: u64 }
//!
//! #[query(output = u64, cache_ttl = "30s", invalidated_by(PriceChanged))]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct GetPrice { pub sku: u64 }
//!
//! #[handler]
//! async fn price(q: GetPrice) -> Result<u64, std::io::Error> { Ok(q.sku * 100) }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = RedisCache::connect("redis://127.0.0.1:6379")
//!     .prefix("shop")           // keys shop:cache:{GetPrice}:…
//!     .await?;                  // checks every option, connects, subscribes
//! let app = Catga::builder().layer(Caching::with_backend(cache)).build()?;
//! assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // handler, then stored in Redis
//! assert_eq!(app.send(GetPrice { sku: 3 }).await?, 300); // near-cache: no round trip
//! app.publish(PriceChanged { sku: 3 }).await?;            // every instance drops GetPrice
//! # Ok(())
//! # }
//! ```
//!
//! ## How it works
//! - **Lookups**: the near-cache first (no I/O); on a miss there, one `MGET` of the query's
//!   generation and the entry. An entry written under another generation is a miss.
//! - **Stores**: one script call that checks the generation is still the one the miss saw and
//!   `SET`s the entry with `PX` (the query's `cache_ttl`); a reply loaded across an
//!   invalidation is not stored.
//! - **Invalidation of a query**: one script call that `INCR`s the query's generation (O(1),
//!   whatever the number of entries; no `KEYS`, no `SCAN`) and `PUBLISH`es on the prefix's
//!   invalidation channel; every instance drops its near entries of the query when it hears
//!   it. This instance's own later lookups wait for the `INCR` (for at most `timeout`).
//!   Invalidating one key is one script call too: `DEL` of the entry and the same `PUBLISH`.
//!
//! ## Keys and values
//! For a query whose wire name is `Q`:
//! - `{prefix}:cache:{Q}` holds the query's **generation**, a decimal counter (no expiry).
//! - `{prefix}:cache:{Q}:{key}` holds one reply, `key` being the query's `CacheKey` or its
//!   JSON form: the value is `v1:{generation}:{expires}:{reply}`, `expires` the reply's end
//!   in Unix milliseconds and `reply` the encoded reply (JSON). Redis expires the key itself
//!   (`PX`, the query's `cache_ttl`).
//!
//! The braces around `Q` are literal: a Redis Cluster hash tag, so a query's generation and
//! its entries share a slot, and each command (the `MGET`, the store, invalidate and delete
//! scripts) touches one slot. An entry of an older generation is never read again; it is
//! overwritten by the next store of its key or expires. A generation key that vanishes
//! (evicted under an `allkeys-*` policy, deleted by hand) is written again from the server's
//! clock in microseconds, above any value the old counter reached, so no generation is used
//! twice.
//!
//! ## On a Redis Cluster
//! [`RedisCache::connect_cluster`] takes the URLs of some nodes. Each query's keys share a
//! hash tag, so its lookups, stores and invalidations run on the node owning its slot, and
//! the queries spread over the nodes; the scripts are loaded into every node; the
//! invalidation subscription is on the first node given (Redis Cluster passes a `PUBLISH` on
//! any node to the subscribers of every node). Lookups read each query's primary.
//!
//! ## Consistency
//! The primary is read consistently: once an invalidation's script has run, no instance's
//! next read of the primary returns a reply it dropped (for replicas, see below). A
//! **near-cache** entry can outlive the invalidation by the time the message takes to reach
//! its instance (measured on loopback, release build, from `publish` on one instance to the
//! entry gone on the other: p50 about 0.05 ms, p99 0.4 ms on a quiet machine and up to 16 ms
//! on a loaded one; see `docs/performance.md`); if messages are lost without the connection
//! visibly closing, by at most the heartbeat (1 s) plus `timeout`; and never by more than
//! [`near_ttl`](RedisCacheConnect::near_ttl).
//!
//! ## Replicas
//! With [`read_from`](RedisCacheConnect::read_from) set to
//! [`ReadFrom::PreferReplica`](crate::store::ReadFrom::PreferReplica) or
//! [`ReadFrom::Replica`](crate::store::ReadFrom::Replica), a lookup's `MGET` may be served by
//! a replica of the primary; the store script and invalidations always run on the primary.
//! The replicas (those given with [`replica`](RedisCacheConnect::replica), else those the
//! primary lists) are found when connecting and again every
//! [`REPLICA_REFRESH`](crate::store::REPLICA_REFRESH) while the cache lives. A replica may
//! lag, so:
//! - after this process invalidates a query (the whole query or one key), **or hears another
//!   instance's invalidation of it on the subscription**, the query's lookups read the primary
//!   for [`read_your_writes_for`](RedisCacheConnect::read_your_writes_for) (1 s by default;
//!   set it above the replicas' lag). While the subscription is down, lookups read the
//!   primary, and for that window after it is back (messages may have been missed).
//! - a lagging replica can cause a miss but never put an old reply back: the store script
//!   refuses a reply whose miss saw an older generation than the primary's.
//! - with `near_cache(false)` there is no subscription: other instances' invalidations are
//!   then seen after the replica's lag (this process's own, at once).
//!
//! A replica that fails a lookup (an error, or no answer within `timeout`) is left out for
//! [`REPLICA_BACKOFF`](crate::store::REPLICA_BACKOFF); with `PreferReplica` the lookup reads
//! the primary at once, with `Replica` it is a miss (the handler runs; the cache never fails
//! a query).
//!
//! ## When Redis is down
//! The cache never fails a query. A command that fails or takes longer than
//! [`timeout`](RedisCacheConnect::timeout) is a miss (the handler runs, its reply is not
//! stored), logged once per outage at `warn`; for
//! [`retry_interval`](RedisCacheConnect::retry_interval) afterwards the cache does not try
//! Redis at all, then one lookup tries again, and the first
//! answer ends the outage (logged at `info`): caching resumes by itself. The near-cache is off
//! while the invalidation subscription is down. A value under a cache key that the cache
//! cannot read (written by something else) is a miss and a warning, and is overwritten by the
//! next store.

mod builder;
mod config;
mod health;
mod invalidation;
mod near;
mod replica;
mod value;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use catga_core::behavior::{CacheBackend, CacheLookup};
use redis::{RedisResult, Script};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio::time::error::Elapsed;
use tokio_util::sync::CancellationToken;

pub use builder::RedisCacheConnect;

use self::config::CacheConfig;
use self::health::{Health, TimedOut};
use self::near::Near;
use self::value::Read;
use crate::connection::{Multiplexed, Routing};
use crate::error::{CommandError, is_connection};

/// How long connecting, loading the scripts and the first subscription may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Query replies in Redis, shared by every instance of a service, with a near-cache in this
/// process's memory: a [`CacheBackend`] for catga's `Caching` behaviour. See the
/// [module docs](self) for how it works and what it guarantees.
///
/// Obtain one with [`RedisCache::connect`] (a URL), [`RedisCache::connect_cluster`] (some
/// nodes of a Redis Cluster) or [`RedisCache::with_connection`] (a client and connection
/// manager you already have), set options on the returned
/// [`RedisCacheConnect`], and `.await` it. Clones share everything (connection, near-cache,
/// subscription); the subscription ends when the last clone is dropped.
#[derive(Clone)]
pub struct RedisCache {
    shared: Arc<Shared>,
    _stop: Arc<StopOnDrop>,
}

/// Cancels the cache's background work when the last [`RedisCache`] clone goes.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What every clone of a cache, its subscription and its invalidations share.
pub(crate) struct Shared {
    /// The primary, or the cluster: every store and invalidation, and the lookups that do not
    /// go to a replica.
    manager: Multiplexed,
    /// Which lookups go to a replica (none unless `read_from` says so). Shared with the task
    /// that looks for replicas again, which holds it weakly and so ends with the cache.
    routing: Arc<Routing>,
    config: CacheConfig,
    health: Health,
    /// `{prefix}:cache:invalidations`.
    channel: String,
    scripts: Scripts,
    queries: RwLock<HashMap<Box<str>, Arc<QueryInner>>>,
    /// Whether the invalidation subscription is up (the near-cache is used only then).
    subscribed: AtomicBool,
    stop: CancellationToken,
    /// The server (or the cluster's nodes), with credentials hidden.
    url: String,
}

pub(crate) struct Scripts {
    store: Script,
    invalidate: Script,
    drop: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            store: Script::new(value::STORE),
            invalidate: Script::new(value::INVALIDATE),
            drop: Script::new(value::DROP),
        }
    }

    fn all(&self) -> [&Script; 3] {
        [&self.store, &self.invalidate, &self.drop]
    }
}

/// `{prefix}:cache:{Q}`: the key of query `Q`'s generation.
fn generation_key(prefix: &str, name: &str) -> Vec<u8> {
    format!("{prefix}:cache:{{{name}}}").into_bytes()
}

/// One query's state in a [`RedisCache`]: its keys and near-cache entries. Made by
/// [`CacheBackend::query`]; opaque.
pub struct RedisQuery(Arc<QueryInner>);

impl fmt::Debug for RedisQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisQuery")
            .field("name", &self.0.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct QueryInner {
    name: &'static str,
    /// `{prefix}:cache:{Q}`.
    generation_key: Vec<u8>,
    near: Near,
    /// This process's invalidations of the query not yet acknowledged by Redis: lookups wait
    /// for them, so a process reads its own invalidations.
    pending: AtomicU32,
    settled: Notify,
    /// Invalidations of the whole query asked for, and the highest number one that moved the
    /// generation covers.
    generations_asked: AtomicU64,
    generations_done: AtomicU64,
}

impl QueryInner {
    /// `{prefix}:cache:{Q}:{key}`.
    fn entry_key(&self, key: &[u8]) -> Vec<u8> {
        [&self.generation_key[..], b":", key].concat()
    }
}

/// What a miss hands to the store of its reply: the generation it saw. Opaque.
#[derive(Debug)]
pub struct RedisTicket(Ticket);

#[derive(Debug)]
enum Ticket {
    /// Redis was not read (out, or this process's invalidation pending): do not store.
    Skip,
    /// Store under `generation` (`None`: the query had none) if it is still current.
    Store {
        generation: Option<Vec<u8>>,
        epoch: u64,
    },
}

/// Counts an invalidation of this process in flight for its query, until dropped.
struct Pending(Arc<QueryInner>);

impl Pending {
    fn new(query: &Arc<QueryInner>) -> Self {
        query.pending.fetch_add(1, Ordering::AcqRel);
        Pending(query.clone())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
        self.0.settled.notify_waiters();
    }
}

impl RedisCache {
    /// Whether the near-cache is in use right now: it is on and the invalidation
    /// subscription is up. A readiness check can report it; while it is off, every lookup
    /// is a round trip.
    pub fn near_cache_active(&self) -> bool {
        self.shared.config.near_cache && self.shared.subscribed.load(Ordering::Acquire)
    }

    /// Whether the cache is in an outage: a command failed or timed out and none has been
    /// answered since (lookups are misses meanwhile).
    pub fn is_unreachable(&self) -> bool {
        self.shared.health.is_out()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.shared.config.prefix
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("url", &self.shared.url)
            .field("config", &self.shared.config)
            .field(
                "subscribed",
                &self.shared.subscribed.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn query(&self, name: &'static str) -> Arc<QueryInner> {
        let mut queries = self
            .queries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queries
            .entry(name.into())
            .or_insert_with(|| {
                Arc::new(QueryInner {
                    name,
                    generation_key: generation_key(&self.config.prefix, name),
                    near: Near::new(self.config.near_capacity),
                    pending: AtomicU32::new(0),
                    settled: Notify::new(),
                    generations_asked: AtomicU64::new(0),
                    generations_done: AtomicU64::new(0),
                })
            })
            .clone()
    }

    fn query_named(&self, name: &str) -> Option<Arc<QueryInner>> {
        self.queries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Drops every near entry of every query (fencing reads in flight).
    fn clear_near(&self) {
        let queries = self
            .queries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for query in queries.values() {
            query.near.clear();
        }
    }

    fn near_on(&self) -> bool {
        self.config.near_cache && self.subscribed.load(Ordering::Acquire)
    }

    /// The command's value, or `None` after recording why there is none.
    fn settle<T>(
        &self,
        command: &'static str,
        key: &[u8],
        result: Result<RedisResult<T>, Elapsed>,
    ) -> Option<T> {
        match result {
            Ok(Ok(value)) => {
                self.health.answered();
                Some(value)
            }
            Ok(Err(error)) => {
                let connection = is_connection(&error);
                let error = CommandError::new(command, String::from_utf8_lossy(key), error);
                if connection {
                    self.health.out(command, &error);
                } else {
                    self.health.failed(command, &error);
                }
                None
            }
            Err(_) => {
                let error = TimedOut {
                    command,
                    after: self.config.timeout,
                };
                self.health.out(command, &error);
                None
            }
        }
    }

    /// Whether no invalidation of this process is pending for `query` (waiting up to
    /// `timeout` for those that are, unless Redis is out).
    async fn caught_up(&self, query: &QueryInner) -> bool {
        if query.pending.load(Ordering::Acquire) == 0 {
            return true;
        }
        if self.health.is_out() {
            return false;
        }
        let settled = async {
            loop {
                let notified = query.settled.notified();
                if query.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(self.config.timeout, settled)
            .await
            .is_ok()
    }

    async fn lookup(&self, query: &QueryInner, key: &[u8]) -> CacheLookup<RedisTicket> {
        let near_on = self.near_on();
        if near_on && let Some(reply) = query.near.get(key, Instant::now()) {
            return CacheLookup::Hit(reply);
        }
        let skip = || CacheLookup::Miss(RedisTicket(Ticket::Skip));
        let epoch = query.near.epoch();
        if !self.caught_up(query).await || !self.health.may_try() {
            return skip();
        }
        let entry = query.entry_key(key);
        let Some((generation, stored)) = self.read(query, &entry).await else {
            return skip();
        };
        let miss = |generation| CacheLookup::Miss(RedisTicket(Ticket::Store { generation, epoch }));
        let Some(generation) = generation else {
            return miss(None);
        };
        if let Some(stored) = stored {
            match value::read(&stored, &generation) {
                Ok(Read::Current { reply, left }) => {
                    let reply: Arc<[u8]> = Arc::from(reply);
                    if near_on {
                        let until = Instant::now() + left.min(self.config.near_ttl);
                        query.near.keep(key, reply.clone(), until, epoch);
                    }
                    return CacheLookup::Hit(reply);
                }
                Ok(Read::Stale) => {}
                Err(malformed) => {
                    tracing::warn!(target: "catga::redis::cache", query = query.name,
                        error = &malformed as &dyn std::error::Error,
                        "a cache entry the cache cannot read; taken as a miss");
                }
            }
        }
        miss(Some(generation))
    }

    async fn store(
        &self,
        query: &QueryInner,
        key: &[u8],
        reply: Arc<[u8]>,
        ttl: Duration,
        ticket: Ticket,
    ) {
        let Ticket::Store { generation, epoch } = ticket else {
            return;
        };
        if !self.health.may_try() {
            return;
        }
        let millis = value::px(ttl);
        let entry = query.entry_key(key);
        let mut invocation = self.scripts.store.key(&query.generation_key);
        invocation
            .key(&entry)
            .arg(generation.as_deref().unwrap_or_default())
            .arg(value::unix_millis().saturating_add(millis))
            .arg(&*reply)
            .arg(millis);
        let mut manager = self.manager.clone();
        let stored = invocation.invoke_async::<i64>(&mut manager);
        let stored = tokio::time::timeout(self.config.timeout, stored).await;
        let stored = self.settle("EVALSHA", &query.generation_key, stored);
        if stored == Some(1) && self.near_on() {
            let until = Instant::now() + ttl.min(self.config.near_ttl);
            query.near.keep(key, reply, until, epoch);
        }
    }
}

impl CacheBackend for RedisCache {
    type Query = RedisQuery;
    type Ticket = RedisTicket;

    fn query(&self, name: &'static str) -> RedisQuery {
        RedisQuery(self.shared.query(name))
    }

    fn get(
        &self,
        query: &RedisQuery,
        key: &[u8],
    ) -> impl Future<Output = CacheLookup<RedisTicket>> + Send {
        self.shared.lookup(&query.0, key)
    }

    fn put(
        &self,
        query: &RedisQuery,
        key: &[u8],
        reply: Arc<[u8]>,
        ttl: Duration,
        ticket: RedisTicket,
    ) -> impl Future<Output = ()> + Send {
        self.shared.store(&query.0, key, reply, ttl, ticket.0)
    }

    fn invalidate_query(&self, query: &RedisQuery) -> impl Future<Output = ()> + Send + 'static {
        let (shared, query) = (self.shared.clone(), query.0.clone());
        let pending = Pending::new(&query);
        query.near.clear();
        async move {
            shared.invalidate(&query, None).await;
            drop(pending);
        }
    }

    fn invalidate_key(
        &self,
        query: &RedisQuery,
        key: &[u8],
    ) -> impl Future<Output = ()> + Send + 'static {
        let (shared, query, key) = (self.shared.clone(), query.0.clone(), key.to_vec());
        let pending = Pending::new(&query);
        query.near.remove(&key);
        async move {
            shared.invalidate(&query, Some(&key)).await;
            drop(pending);
        }
    }

    fn cached(&self, query: &RedisQuery) -> usize {
        query.0.near.len()
    }
}
