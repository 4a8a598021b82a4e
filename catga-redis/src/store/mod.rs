//! catga's stores on Redis, shared by every instance of an application on one server and
//! key prefix: idempotency keys, dead letters, event streams, saga instances, leases and
//! scheduled messages.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use catga_redis::store::RedisStores;
//!
//! let stores = RedisStores::connect("redis://127.0.0.1:6379")
//!     .prefix("shop")
//!     .await?;
//! # let _ = stores;
//! # Ok(())
//! # }
//! ```
//!
//! **Round trips.** Every store operation is one command: a native one, or a Lua script
//! (`EVALSHA`) where atomicity needs several steps. A script unknown to the server (after a
//! restart without data, a `SCRIPT FLUSH`, a failover) is loaded again by the client on
//! `NOSCRIPT` and the call repeated: two more round trips, once.
//!
//! **Keys.** Every key starts with the prefix (default `catga`). The keys one operation
//! touches share a Redis Cluster hash tag (`{…}`), so each operation runs on one node of a
//! cluster ([`RedisStores::connect_cluster`]).
//!
//! **Errors.** A failed command, a value that is not what the store wrote (another program
//! wrote the key) and a write over the size limit are [`RedisStoreError`]s, typed and with
//! the key; nothing panics on what the server returns.

mod conn;
mod connect;
mod dead_letter;
mod error;
mod event;
mod idempotency;
mod lease;
mod read_from;
mod saga;
mod schedule;

pub(crate) use conn::StoreConn;
pub use connect::{RedisStores, RedisStoresConnect};
pub use dead_letter::RedisDeadLetterStore;
pub use error::RedisStoreError;
pub use event::RedisEventStore;
pub use idempotency::RedisIdempotencyStore;
pub(crate) use idempotency::UnitCompletion;
pub use lease::RedisLeaseStore;
pub use read_from::{DEFAULT_READ_YOUR_WRITES, REPLICA_BACKOFF, REPLICA_REFRESH, ReadFrom};
pub use saga::RedisSagaStore;
pub use schedule::RedisScheduleStore;

/// The largest value a store writes unless configured: 64 MiB. A clear error in place of
/// the server's refusal at its `proto-max-bulk-len` (512 MB by default), and a bound on what
/// one write holds in memory.
pub const DEFAULT_MAX_WRITE_BYTES: usize = 64 * 1024 * 1024;
