//! # catga-redis
//!
//! A catga [`Transport`](catga_core::transport::Transport) over Redis Streams: services in
//! different processes publish events to each other and send each other commands and queries
//! through one Redis server (6.2 or later, for `XAUTOCLAIM`; 7.0 recommended).
//!
//! ```no_run
//! use catga_core::prelude::*;
//! use catga_redis::RedisTransport;
//!
//! #[command(output = u64)]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Ship { pub order: u64 }
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct OrderShipped { pub order: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("no courier")]
//! pub struct NoCourier;
//!
//! #[handler]
//! async fn ship(cmd: Ship, ctx: &Context) -> Result<u64, NoCourier> {
//!     ctx.publish(OrderShipped { order: cmd.order }).ok();
//!     Ok(cmd.order * 10)
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisTransport::connect("redis://127.0.0.1:6379")
//!     .prefix("shop")                            // keys shop:events:…, shop:requests:…
//!     .await?;                                   // checks every option, then connects
//! let app = Catga::builder().transport(redis).service("shipping").build()?;
//! // Consume `Ship` requests and `OrderShipped` events, sharing them with every other
//! // instance of the `shipping` service.
//! let serving = app.serve().await?;
//!
//! // Any process on the same server and prefix can now send `Ship`.
//! let tracking = app.send(Ship { order: 7 }).await?;
//! assert_eq!(tracking, 70);
//!
//! serving.shutdown().await; // stops reading, finishes and acknowledges what is in flight
//! # Ok(())
//! # }
//! ```
//!
//! ## Options
//! [`RedisConnect`] lists them, with their defaults and valid values; the NATS transport
//! (`catga-nats`) has the same names for the same knobs (`prefix`, `max_deliveries`,
//! `backoff`, `ack_wait`, `batch`, `fetch_wait`, `response_timeout`; `docs/transports.md` has
//! the table) and is finished the same way, with `.await`. Awaiting the builder checks every
//! option before anything is sent: a value the transport cannot use is refused with
//! [`ConnectError::InvalidOption`] (the option, the value, why), never replaced by another.
//!
//! ## How messages map to Redis
//! - **Events**: one stream per event wire name, `{prefix}:events:{name}`, added to with
//!   `XADD … MAXLEN ~ n`. Every service that handles the event is a consumer group on that
//!   stream, each instance a consumer, so each service gets every event and its instances
//!   share them. Nothing is ever deleted from an event stream: other services read it too.
//! - **Commands and queries**: one stream per wire name, `{prefix}:requests:{name}`, consumed
//!   the same way by the one service that handles it. The request carries the key of a fresh
//!   reply list; the handling instance pushes the reply there (`RPUSH` with an expiry) and
//!   acknowledges and deletes the request in the same transaction; the caller waits for the
//!   reply with `BLPOP` for its timeout. A handler's error comes back as the typed remote
//!   failure it was. A request to a stream no instance serves fails at once with
//!   `TransportError::NoResponders`; the consumer of an instance that died without shutting
//!   down counts until it is forgotten, after
//!   [`forget_idle`](RedisConnect::forget_idle) with nothing pending.
//! - An entry's fields are the envelope's headers ([`catga_core::envelope::header`]) plus
//!   `catga-payload`, so `XRANGE` shows readable messages, and the W3C trace context
//!   (`traceparent`) travels with each. **The stream decides what an entry is**: one whose
//!   fields name another message or kind is kept aside (code `envelope`), never dispatched.
//! - **Events every instance must see** (a cached query's `invalidated_by`) are also read by
//!   each instance without a group (`XREAD`), so every instance's cache is invalidated, not
//!   only the one instance the service's group hands the event to.
//!
//! ## Delivery guarantees
//! The rules of [`catga_core::transport::Inbound`], on Redis:
//! - **An event is acknowledged only once it was handled, or kept** in the application's
//!   dead-letter store ([`CatgaBuilder::dead_letters`](catga_core::CatgaBuilder::dead_letters),
//!   or a `DeadLetter` layer): a failure that is not retryable (a panic included) at once, a
//!   retryable one after [`max_deliveries`](RedisConnect::max_deliveries), exactly one
//!   record each. Until then it stays pending and is delivered again; a store that cannot keep
//!   it leaves it pending too. Its handlers run at most `max_deliveries` times in all.
//! - **At least once per service**: a crash, a lost connection or a failed acknowledgement
//!   means an entry is handled again: by the same instance when it reconnects, or, after
//!   [`ack_wait`](RedisConnect::ack_wait), by another instance of the service
//!   (`XAUTOCLAIM`). An instance given a stable name with
//!   [`instance`](RedisConnect::instance) (its pod name, say) resumes its own
//!   unacknowledged entries as soon as it is restarted. Add catga's `Idempotency` behaviour to
//!   make redeliveries harmless.
//! - **A command is never run twice by the transport**: a request taken over from an instance
//!   that died before answering is answered `in_doubt` and kept, unless the command is
//!   declared `#[command(idempotent)]` (queries run again). A panicking request is answered at
//!   once (code `panic`) and not run again.
//! - **A server that lost its data** is recovered from: each vanished consumer group is created
//!   again after the last entry the instance saw, so every entry added after the restart is
//!   handled.
//! - Trimming (`MAXLEN ~`) does not wait for consumers: a service that falls further behind
//!   than the stream's length loses the oldest entries it had not read. An event published
//!   before a service's consumer group exists reaches it only with [`StartFrom::Beginning`].
//!
//! `docs/redis.md` has the details and the measured takeover and recovery times.
//!
//! ## TLS
//! With the `tls` feature, `rediss://host:port/db` connects over TLS (the redis crate's rustls
//! client, with rustls's `ring` provider), trusting the system's certificate authorities, or
//! only those given with `RedisConnect::tls_root_certificate`; a client certificate for
//! mutual TLS is given with `RedisConnect::tls_client_auth`. The stores' and the cache's
//! builders have the same two options. Without the feature, `rediss://` is refused with
//! [`ConnectError::TlsUnsupported`]. `docs/transports.md` has the details.
//!
//! ## Redis Cluster
//! [`RedisTransport::connect_cluster`], [`RedisStores::connect_cluster`](store::RedisStores::connect_cluster)
//! and [`RedisCache::connect_cluster`] take the URLs of some nodes of a Redis Cluster and the
//! same options as `connect`: streams spread over the nodes, each store family stays on the
//! node owning its hash tag, each cached query on the node owning its name, blocking reads
//! connect to the node owning their key. `docs/redis.md` (Redis Cluster) has the key
//! layout and what is tested.
//!
//! ## Caching query replies
//! [`RedisCache`] is a backend for catga's `Caching` behaviour
//! (`Caching::with_backend(cache)`): one cache every instance of a service shares, with a
//! near-cache in each instance's memory, and `invalidated_by` events that clear it for all of
//! them. A Redis that is down makes it a miss (the handler runs), never a failed query. See
//! the [`cache`] module.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

// The guide's code blocks compile as doctests of this crate (catga-core, which includes the
// other guides, cannot name this crate), so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/redis.md")]
mod guide_doctests {}

mod blocking;
mod builder;
pub mod cache;
mod config;
mod connection;
mod entry;
mod error;
mod inbox;
mod keys;
pub mod outbox;
mod reply;
pub mod store;
mod tls;
mod transport;

pub use builder::RedisConnect;
pub use cache::RedisCache;
pub use config::StartFrom;
pub use error::{CommandError, ConnectError};
pub use inbox::RedisInbox;
pub use outbox::{RedisOutbox, RedisOutboxError, RedisOutboxRelay, RedisWrites, RunningRelay};
/// Where reads that accept a value a moment old go (the stores' and the cache's
/// `read_from`); also at `catga_redis::store::ReadFrom`.
pub use store::ReadFrom;
pub use transport::{CONSUMER_ACK_PENDING, CONSUMER_PENDING, RedisTransport};

/// The `redis` client crate this adapter is built on (1.8), re-exported so the commands a
/// handler queues (`RedisWrites::command(catga_redis::redis::cmd(…), …)`) and reads
/// (`RedisWrites::read`) use the same version without a dependency of their own.
pub use redis;

/// The types most applications name, for `use catga_redis::prelude::*`: the transport, its
/// stores, the cache and where reads go.
pub mod prelude {
    pub use crate::store::RedisStores;
    pub use crate::{ReadFrom, RedisCache, RedisTransport, StartFrom};
}
