//! The event store on Redis: event streams with optimistic concurrency, and one global,
//! gap-free log in append order for projections. [`RedisEventStore`]'s documentation says how
//! (key layout, scripts, ordering, durability); `scripts.rs` holds the Lua, `decode.rs` reads
//! events back, `outcome.rs` reads what the scripts answer (the saga store's too).

mod decode;
pub(in crate::store) mod outcome;
mod scripts;

use std::sync::Arc;

use catga_core::store::event::{EventStore, EventStoreError, NewEvent, StoredEvent};
use redis::Value;
use uuid::Uuid;

pub(in crate::store) use self::decode::micros;
use self::outcome::{Outcome, count, outcome, typed};
use super::{DEFAULT_MAX_WRITE_BYTES, RedisStoreError, RedisStores, StoreConn};

/// The largest `max_write_bytes` a store accepts: 512 MiB, Redis's default
/// `proto-max-bulk-len` (the largest value it takes in one argument).
pub(in crate::store) const WRITE_LIMIT_CEILING: usize = 512 * 1024 * 1024;

/// Checks a `max_write_bytes` option.
pub(in crate::store) fn write_limit(bytes: usize) -> Result<usize, RedisStoreError> {
    if bytes == 0 || bytes > WRITE_LIMIT_CEILING {
        return Err(RedisStoreError::InvalidOption {
            option: "max_write_bytes",
            value: bytes.to_string(),
            reason: "give from 1 byte to 512 MiB (Redis's default `proto-max-bulk-len`)",
        });
    }
    Ok(bytes)
}

impl RedisStores {
    /// The event store of these stores' server and prefix, on their shared connection. Does
    /// no I/O.
    pub fn events(&self) -> RedisEventStore {
        let tag = self.conn.tag("events");
        RedisEventStore {
            conn: self.conn.clone(),
            keys: Arc::new(Keys {
                log: format!("{tag}:log"),
                position: format!("{tag}:position"),
                stream: format!("{tag}:stream:"),
            }),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }
}

struct Keys {
    log: String,
    position: String,
    /// A stream's key less its name.
    stream: String,
}

/// An [`EventStore`] on Redis, shared by every instance on the same server and prefix, with a
/// global log for projections ([`read_all`](Self::read_all)); make one with
/// [`RedisStores::events`]. Cheap to clone.
///
/// **Keys.** Every key of the family starts with the hash tag `{<prefix>:events}`:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{p:events}:stream:<stream>` | Redis Stream | the stream's events, entry id `<version>-0`, fields `id`, `type`, `payload`, `correlation`, `causation` (UUIDs hyphenated, absent ones empty), `at` (µs since the epoch, the server's clock) |
/// | `{p:events}:log` | Redis Stream | the global log: entry id `<position>-0`, fields `s` (stream name) and `v` (version) |
/// | `{p:events}:position` | string | the last position given |
///
/// One hash tag puts every key of a prefix's events in one Redis Cluster slot, so the append
/// script may touch the stream, the log and the counter; the consequence is that **one node
/// holds all the events of one prefix** (use several prefixes to spread event stores over a
/// cluster). Payloads are kept byte for byte (field values are binary-safe).
///
/// **Appends.** One script (`EVALSHA`) compares the stream's length with the expected version,
/// then adds the events at versions `expected + 1 …`, increments the counter by their number
/// and adds one log entry per event at the positions it drew. It checks everything before its
/// first write, so a stale append is a [`Conflict`](EventStoreError::Conflict) carrying the
/// stream's version, and writes nothing; Redis runs one script at a time, so of concurrent
/// appends at one version exactly one wins, and versions have no gaps.
///
/// **Why [`read_all`](Self::read_all) never skips a position.** Positions are drawn
/// and their log entries added by the script that appends the events; Redis runs one script
/// (or command) at a time and a script's writes become visible together when it returns. So
/// when a reader sees position `n`, the scripts that drew `1..n` have all returned: every
/// smaller position is visible too, in order, and no smaller position will ever be added. A
/// projection keeps the last position it applied and asks for what follows; it needs no gap
/// detection. (Postgres needs a commit-time lock for the same promise; on Redis the
/// single-threaded execution gives it.) Replicas apply a script's effects as one transaction,
/// so a reader of a replica sees the same order.
///
/// **Round trips.** Each operation is one: an append (of any number of events) or an empty
/// append is one `EVALSHA`, [`load`](EventStore::load) is one `XRANGE`, a `read_all` is one
/// `EVALSHA`.
///
/// **Durability** is the server's: with `appendonly no` a restart loses every stream, the log
/// and the counter (positions start again at 1, so a projection's checkpoint from before points
/// past the new log: rebuild projections after such a loss); with `appendfsync everysec` up to
/// about a second of acknowledged appends can be lost. A failover to a replica that had not
/// received the last appends loses them too, and their positions are given again to other
/// events.
///
/// **Values.** Versions count from 1 in each stream, positions from 1 across all of them
/// (`i64`, as Postgres's); `recorded_at` is the Redis server's clock at the append, in whole
/// microseconds, the same for every event of one append.
///
/// **Errors** are [`EventStoreError::Backend`] with a
/// [`RedisStoreError`] as the source: [`Command`](RedisStoreError::Command) when the server
/// could not be reached or refused
/// ([`is_retryable`](RedisStoreError::is_retryable) tells which),
/// [`Malformed`](RedisStoreError::Malformed) for a key holding what the store never writes,
/// [`TooLarge`](RedisStoreError::TooLarge) for an append over
/// [`max_write_bytes`](Self::max_write_bytes), refused before anything is sent.
///
/// An aggregate saved through a [`Repository`](catga_core::aggregate::Repository), and a
/// projection reading the global log:
///
/// ```no_run
/// use catga_core::aggregate::{Aggregate, Repository};
/// use catga_core::prelude::*;
/// use catga_redis::store::RedisStores;
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct Deposited { pub amount: u64 }
///
/// #[derive(Debug, Default)]
/// pub struct Account { balance: u64 }
///
/// impl Aggregate for Account {
///     type Event = Deposited;
///     const TYPE: &'static str = "account"; // streams `account-<id>`
///     fn apply(&mut self, event: &Deposited) { self.balance += event.amount; }
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let stores = RedisStores::connect("redis://127.0.0.1:6379").prefix("shop").await?;
/// let events = stores.events();
/// let accounts = Repository::<Account, _>::new(events.clone());
/// let mut account = accounts.load("7").await?;
/// account.record(Deposited { amount: 40 });
/// accounts.save(&mut account).await?; // one `EVALSHA`; a conflict if someone saved first
///
/// // A projection: everything after the last position it applied, in one global order.
/// let mut applied = 0; // kept with the read model
/// for (position, event) in events.read_all(applied, 100).await? {
///     println!("{position}: {} v{} {}", event.stream, event.version, event.event_type);
///     applied = position;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisEventStore {
    conn: StoreConn,
    keys: Arc<Keys>,
    max_write_bytes: usize,
}

impl std::fmt::Debug for RedisEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventStore")
            .field("log", &self.keys.log)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

const APPEND: &str = "event store: append";
const LOAD: &str = "event store: load";
const READ_ALL: &str = "event store: read all";

fn backend(stream: &str, error: RedisStoreError) -> EventStoreError {
    EventStoreError::backend(stream, error)
}

/// A UUID as the store writes it: hyphenated, lower case.
fn hyphenated(id: Uuid) -> String {
    id.hyphenated().to_string()
}

impl RedisEventStore {
    /// The most bytes one append may hold in its payloads, event types and stream name (counted
    /// once per event) together: default [`DEFAULT_MAX_WRITE_BYTES`] (64 MiB). A larger append
    /// is refused with [`RedisStoreError::TooLarge`] before anything is sent.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for 0 or more than 512 MiB.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, RedisStoreError> {
        self.max_write_bytes = write_limit(bytes)?;
        Ok(self)
    }

    /// The key of `stream`'s events: `{<prefix>:events}:stream:<stream>`.
    pub fn stream_key(&self, stream: &str) -> String {
        format!("{}{stream}", self.keys.stream)
    }

    /// The key of the global log: `{<prefix>:events}:log`.
    pub fn log_key(&self) -> &str {
        &self.keys.log
    }

    /// The key of the position counter: `{<prefix>:events}:position`.
    pub fn position_key(&self) -> &str {
        &self.keys.position
    }

    /// At most `limit` events of every stream whose global position is greater than `after`
    /// (0 or less: from the start), in position order, each with its position. Positions
    /// start at 1 and follow append order with no gap (see [`RedisEventStore`] for why a
    /// reader never skips one): pass the last position you applied to get what was appended
    /// since. One round trip (`EVALSHA`) on the primary.
    ///
    /// Positions and events mirror `PostgresEventStore::read_all` (`(i64, StoredEvent)`, the
    /// same meaning), so a projection can be written once for either.
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or refused;
    /// [`RedisStoreError::Malformed`] for a log entry or event the store did not write.
    pub async fn read_all(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, StoredEvent)>, RedisStoreError> {
        let start = if after < 1 {
            "-".to_owned()
        } else {
            format!("({after}-0")
        };
        let mut invocation = scripts::READ_ALL.prepare_invoke();
        invocation
            .key(&self.keys.log)
            .arg(start)
            .arg(i64::try_from(limit).unwrap_or(i64::MAX))
            .arg(&self.keys.stream);
        let reply: Value = self
            .conn
            .invoke(READ_ALL, &self.keys.log, &invocation)
            .await
            .map_err(typed)?;
        match outcome(READ_ALL, &self.keys.log, reply)? {
            Outcome::Done(values) => decode::positioned(
                READ_ALL,
                &self.keys.log,
                |stream| self.stream_key(stream),
                values,
            ),
            Outcome::Conflict(_) => Err(RedisStoreError::malformed(
                READ_ALL,
                &self.keys.log,
                "the script answered a conflict to a read",
            )),
        }
    }

    fn check_size(&self, stream: &str, events: &[NewEvent]) -> Result<(), RedisStoreError> {
        let size = events.iter().fold(0usize, |size, event| {
            size.saturating_add(stream.len())
                .saturating_add(event.event_type.len())
                .saturating_add(event.payload.len())
        });
        if size > self.max_write_bytes {
            return Err(RedisStoreError::TooLarge {
                operation: APPEND,
                size,
                limit: self.max_write_bytes,
            });
        }
        Ok(())
    }
}

impl EventStore for RedisEventStore {
    /// One `EVALSHA`, whatever the number of events (see [`RedisEventStore`]).
    async fn append(
        &self,
        stream: &str,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<u64, EventStoreError> {
        self.check_size(stream, &events)
            .map_err(|e| backend(stream, e))?;
        let key = self.stream_key(stream);
        let mut invocation = scripts::APPEND.prepare_invoke();
        invocation
            .key(&key)
            .key(&self.keys.log)
            .key(&self.keys.position)
            .arg(expected_version)
            .arg(stream);
        for event in &events {
            invocation
                .arg(hyphenated(event.event_id))
                .arg(&event.event_type)
                .arg(&event.payload[..])
                .arg(event.correlation_id.map(hyphenated).unwrap_or_default())
                .arg(event.causation_id.map(hyphenated).unwrap_or_default());
        }
        // The events are in the invocation now; their copies go before the round trip.
        drop(events);
        let reply: Value = self
            .conn
            .invoke(APPEND, &key, &invocation)
            .await
            .map_err(|e| backend(stream, typed(e)))?;
        match outcome(APPEND, &key, reply).map_err(|e| backend(stream, e))? {
            Outcome::Conflict(actual) => Err(EventStoreError::Conflict {
                stream: stream.to_owned(),
                expected: expected_version,
                actual,
            }),
            Outcome::Done(values) => values.first().and_then(count).ok_or_else(|| {
                backend(
                    stream,
                    RedisStoreError::malformed(APPEND, &key, "the script answered no version"),
                )
            }),
        }
    }

    /// One `XRANGE` (a read: it may go to a replica when the stores read from replicas).
    async fn load(
        &self,
        stream: &str,
        from_version: u64,
    ) -> Result<Vec<StoredEvent>, EventStoreError> {
        let key = self.stream_key(stream);
        let first = from_version.max(1);
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&key).arg(format!("{first}-0")).arg("+");
        let reply: Value = self
            .conn
            .run_read(LOAD, &key, &cmd)
            .await
            .map_err(|e| backend(stream, typed(e)))?;
        decode::entries(LOAD, &key, stream, first, reply).map_err(|e| backend(stream, e))
    }
}
