//! The dead-letter store on Redis: messages that could not be handled, kept with every field
//! of their [`DeadLetterRecord`], to be inspected, replayed or purged from any instance. How it
//! works is documented on [`RedisDeadLetterStore`]; the record's fields are in `fields.rs`, the
//! Lua scripts in `scripts.rs`.

mod fields;
mod scripts;

use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::dead_letter::{DeadLetterRecord, DeadLetterStore};
use redis::{ScriptInvocation, Value};
use uuid::Uuid;

use super::DEFAULT_MAX_WRITE_BYTES;
use super::conn::StoreConn;
use super::connect::RedisStores;
use super::error::RedisStoreError;
use super::idempotency::{escape, write_limit};

/// Records deleted by one purge script at most.
const PURGE_BATCH: usize = 1000;

const PUT: &str = "dead letters: put";
const PUT_MANY: &str = "dead letters: put_many";
const LIST: &str = "dead letters: list";
const TAKE: &str = "dead letters: take";
const COUNT: &str = "dead letters: count";
const BY_MESSAGE: &str = "dead letters: by_message";
const FAILED_BETWEEN: &str = "dead letters: failed_between";
const PURGE: &str = "dead letters: purge_older_than";

/// A [`DeadLetterStore`] on Redis, shared by every instance on the same server and key
/// prefix. Make one with [`RedisStores::dead_letters`]. Cheap to clone.
///
/// Every field of a record is kept as given: text as UTF-8, the payload and raw headers byte
/// for byte (an empty payload stays empty, an absent one absent), headers in order with their
/// duplicates, `failed_at` to the microsecond (rounded down, as the Postgres store keeps it).
/// Records list oldest first by id (a UUID v7, so by creation time); putting a record whose id
/// is stored replaces it, which is how a failed replay puts its letter back
/// ([`Catga::replay_dead_letter`](catga_core::Catga::replay_dead_letter)).
///
/// Besides the trait: [`put_many`](Self::put_many) in one round trip, lookups by message name
/// ([`by_message`](Self::by_message)) and by failure time
/// ([`failed_between`](Self::failed_between)), and [`purge_older_than`](Self::purge_older_than),
/// with the names and meaning of the Postgres store's.
///
/// # Keys
/// Every key starts with one hash tag, `{<prefix>:dead_letters}`:
///
/// | key | type | holds |
/// |---|---|---|
/// | `{shop:dead_letters}:record:<id>` | hash | one record, a field per record field ([`record_key`](Self::record_key)) |
/// | `{shop:dead_letters}:ids` | sorted set | every id, score 0: ids in order (UUID v7: by time) |
/// | `{shop:dead_letters}:by_time` | sorted set | every id, scored by `failed_at` in µs |
/// | `{shop:dead_letters}:by_message` | sorted set | `<message>:<id>`, score 0 (the message escaped: `%`, `:`, `{`, `}`, space, control characters as `%XX`) |
///
/// One tag for the family puts every key in one Redis Cluster slot. That is what lets a put
/// write the record and its three index entries in one atomic script (no index ever names a
/// record that is not there, nor misses one that is), lets a take remove them together (of
/// concurrent takes of one id exactly one gets it), and lets list, purge and the lookups read
/// the records their index names in the same script. The price: one store's dead letters live
/// on one Cluster node, which their volume (failures, not traffic) affords.
///
/// # Round trips
/// | operation | cost |
/// |---|---|
/// | `put`, `take`, `list`, [`by_message`](Self::by_message), [`failed_between`](Self::failed_between) | 1 (`EVALSHA`) |
/// | `count` | 1 (`ZCARD`, constant time) |
/// | [`put_many`](Self::put_many) | 1 for the batch (one `EVALSHA`) |
/// | [`purge_older_than`](Self::purge_older_than) | 1 per 1,000 records deleted, and 1 to find none are left (one script never blocks the server for long) |
/// | [`load_scripts`](Self::load_scripts) | 1 |
///
/// A script the server does not know (`NOSCRIPT`) is loaded and the call repeated, two more
/// round trips, once.
///
/// # Durability
/// The server's: with `appendonly no` a restart loses every dead letter. Keep them on a
/// server with `appendonly yes` (and `appendfsync always` to lose nothing acknowledged), or in
/// the Postgres store.
///
/// # Limits and errors
/// A record whose fields, payload and raw headers together exceed
/// [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default) is refused with
/// [`RedisStoreError::TooLarge`] before anything is sent. A key holding something the store
/// did not write fails with [`RedisStoreError::Malformed`] (or [`RedisStoreError::Command`]
/// with the server's `WRONGTYPE`); a take never removes a record it could not give back. A
/// server that cannot be reached gives an error whose
/// [`is_retryable`](RedisStoreError::is_retryable) is true.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_core::behavior::{DeadLetter, Retry};
/// use catga_redis::store::RedisStores;
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .await?;
/// let dead_letters = stores.dead_letters();
/// let app = Catga::builder()
///     .dead_letters(dead_letters.clone()) // failed deliveries from the transport
///     .layer(DeadLetter::new(dead_letters.clone())) // handlers that fail for good
///     .layer(Retry::exponential(3))
///     .build()?;
/// // The wire name: by default the type's name, e.g. `PlaceOrder`.
/// for record in dead_letters.by_message("PlaceOrder", 10).await? {
///     app.replay_dead_letter(&dead_letters, record.id).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisDeadLetterStore {
    conn: StoreConn,
    /// `{<prefix>:dead_letters}`.
    tag: String,
    max_write_bytes: usize,
}

impl std::fmt::Debug for RedisDeadLetterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisDeadLetterStore")
            .field("tag", &self.tag)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// The dead-letter store of these stores' server and prefix (see
    /// [`RedisDeadLetterStore`]). Does no I/O.
    pub fn dead_letters(&self) -> RedisDeadLetterStore {
        RedisDeadLetterStore {
            tag: self.conn.tag("dead_letters"),
            conn: self.conn.clone(),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }
}

/// A limit as the count of a `LIMIT` clause (a `usize` beyond `i64` asks for everything
/// anyway).
fn count_arg(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl RedisDeadLetterStore {
    /// The most bytes one record may hold in its fields, payload and raw headers together
    /// (default [`DEFAULT_MAX_WRITE_BYTES`](super::DEFAULT_MAX_WRITE_BYTES), 64 MiB); a larger
    /// record is refused with [`RedisStoreError::TooLarge`] before anything is sent.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for 0 or more than 512 MiB.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, RedisStoreError> {
        self.max_write_bytes = write_limit(bytes)?;
        Ok(self)
    }

    /// The key of the record `id`: `{<prefix>:dead_letters}:record:<id>`, a hash.
    pub fn record_key(&self, id: Uuid) -> String {
        format!("{}:record:{id}", self.tag)
    }

    fn record_prefix(&self) -> String {
        format!("{}:record:", self.tag)
    }

    fn index(&self, name: &str) -> String {
        format!("{}:{name}", self.tag)
    }

    /// Loads the store's scripts into the server's script cache: one round trip. Optional:
    /// a call that finds its script missing loads it itself (two more round trips, once).
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or refused a script.
    pub async fn load_scripts(&self) -> Result<(), RedisStoreError> {
        self.conn
            .load_scripts("dead letters: load scripts", &scripts::all())
            .await
    }

    /// The put script's call for `record`, checked against the size limit.
    /// A record's key, its script arguments (id, `failed_at` in µs, `by_message` member, then
    /// field-value pairs), checked against the size limit.
    fn put_args(
        &self,
        operation: &'static str,
        record: &DeadLetterRecord,
    ) -> Result<(String, Vec<Vec<u8>>), RedisStoreError> {
        let (fields, failed_at) =
            fields::encode(record).ok_or_else(|| RedisStoreError::InvalidOption {
                option: "DeadLetterRecord::failed_at",
                value: format!("{:?}", record.failed_at),
                reason: "more than 31,000 years from 1970: give the time it failed",
            })?;
        if fields.bytes > self.max_write_bytes {
            return Err(RedisStoreError::TooLarge {
                operation,
                size: fields.bytes,
                limit: self.max_write_bytes,
            });
        }
        let id = record.id.to_string();
        let entry = format!("{}:{id}", escape(&record.message));
        let mut args = Vec::with_capacity(3 + 2 * fields.pairs.len());
        args.push(id.into_bytes());
        args.push(failed_at.to_string().into_bytes());
        args.push(entry.into_bytes());
        for (name, value) in fields.pairs {
            args.push(name.as_bytes().to_vec());
            args.push(value.to_vec());
        }
        Ok((self.record_key(record.id), args))
    }

    fn put_call(
        &self,
        operation: &'static str,
        record: &DeadLetterRecord,
    ) -> Result<ScriptInvocation<'static>, RedisStoreError> {
        let (key, args) = self.put_args(operation, record)?;
        let mut call = scripts::PUT.prepare_invoke();
        call.key(key)
            .key(self.index("ids"))
            .key(self.index("by_time"))
            .key(self.index("by_message"));
        for arg in args {
            call.arg(arg);
        }
        Ok(call)
    }

    /// Keeps every record of `records`, as [`put`](DeadLetterStore::put) would one by one,
    /// in **one script, one round trip** for the batch: each record is written with its
    /// index entries, and the server runs the batch at once. All the keys share the family's
    /// hash tag, so the script is one Redis Cluster slot whatever the batch.
    ///
    /// # Errors
    /// [`RedisStoreError::TooLarge`] before anything is sent if any record is over
    /// [`max_write_bytes`](Self::max_write_bytes) (also for the batch as a whole, which is
    /// one command); [`RedisStoreError::Command`] when the connection failed or the server
    /// refused the script (a key another program wrote with another type: nothing of the
    /// batch is written).
    pub async fn put_many(&self, records: &[DeadLetterRecord]) -> Result<(), RedisStoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut call = scripts::PUT_MANY.prepare_invoke();
        call.key(self.index("ids"))
            .key(self.index("by_time"))
            .key(self.index("by_message"));
        let mut total = 0usize;
        for record in records {
            let (key, args) = self.put_args(PUT_MANY, record)?;
            total += args.iter().map(Vec::len).sum::<usize>();
            if total > self.max_write_bytes {
                return Err(RedisStoreError::TooLarge {
                    operation: PUT_MANY,
                    size: total,
                    limit: self.max_write_bytes,
                });
            }
            call.key(key).arg(args.len()).arg(args);
        }
        let written: Value = self.conn.invoke(PUT_MANY, &self.tag, &call).await?;
        match written {
            Value::Int(n) if usize::try_from(n).ok() == Some(records.len()) => Ok(()),
            other => Err(RedisStoreError::malformed(
                PUT_MANY,
                self.tag.clone(),
                format!(
                    "the script answered {other:?} for {} records",
                    records.len()
                ),
            )),
        }
    }

    /// The oldest `limit` records of the message named `message` (its wire name), oldest
    /// first (by id). One round trip.
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached;
    /// [`RedisStoreError::Malformed`] for a record the store did not write.
    pub async fn by_message(
        &self,
        message: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, RedisStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let escaped = escape(message);
        let key = self.index("by_message");
        let value: Value = self
            .conn
            .invoke(
                BY_MESSAGE,
                &key,
                scripts::BY_MESSAGE
                    .key(&key)
                    .arg(self.record_prefix())
                    .arg(format!("[{escaped}:"))
                    .arg(format!("({escaped};"))
                    .arg(count_arg(limit)),
            )
            .await?;
        self.records(BY_MESSAGE, value)
    }

    /// At most `limit` records whose `failed_at` is in `from..until` (from inclusive, until
    /// exclusive, to the microsecond), in order of `failed_at`, then id. Times are the clocks
    /// of the processes that dead-lettered the messages. One round trip.
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached;
    /// [`RedisStoreError::Malformed`] for a record the store did not write.
    pub async fn failed_between(
        &self,
        from: SystemTime,
        until: SystemTime,
        limit: usize,
    ) -> Result<Vec<DeadLetterRecord>, RedisStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A bound beyond ±31,000 years is no bound.
        let min = fields::micros_ceil(from).map_or_else(|| "-inf".into(), |us| us.to_string());
        let max = fields::micros_ceil(until).map_or_else(|| "+inf".into(), |us| format!("({us}"));
        let key = self.index("by_time");
        let value: Value = self
            .conn
            .invoke(
                FAILED_BETWEEN,
                &key,
                scripts::FAILED_BETWEEN
                    .key(&key)
                    .arg(self.record_prefix())
                    .arg(min)
                    .arg(max)
                    .arg(count_arg(limit)),
            )
            .await?;
        self.records(FAILED_BETWEEN, value)
    }

    /// Deletes the records that failed more than `age` ago (by the server's clock against
    /// each record's `failed_at`) with their index entries, and returns how many. One round
    /// trip per 1,000 records deleted (and one to find that none are left).
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or a record key holds
    /// another type.
    pub async fn purge_older_than(&self, age: Duration) -> Result<u64, RedisStoreError> {
        // Past 2^53 µs (285 years) a double cannot hold the difference exactly, and it
        // reaches before any record anyway.
        let age = u64::try_from(age.as_micros())
            .unwrap_or(u64::MAX)
            .min(1 << 53);
        let keys = [
            self.index("ids"),
            self.index("by_time"),
            self.index("by_message"),
        ];
        let mut purged = 0;
        loop {
            let deleted: u64 = self
                .conn
                .invoke(
                    PURGE,
                    &keys[1],
                    scripts::PURGE
                        .key(&keys[0])
                        .key(&keys[1])
                        .key(&keys[2])
                        .arg(self.record_prefix())
                        .arg(age)
                        .arg(PURGE_BATCH),
                )
                .await?;
            purged += deleted;
            if deleted < PURGE_BATCH as u64 {
                return Ok(purged);
            }
        }
    }

    /// The records of a listing script's answer, `{id, fields}` each; an id whose record is
    /// gone (deleted by hand) is left out.
    fn records(
        &self,
        operation: &'static str,
        value: Value,
    ) -> Result<Vec<DeadLetterRecord>, RedisStoreError> {
        let malformed =
            |key: &str, reason: String| RedisStoreError::malformed(operation, key, reason);
        let Value::Array(rows) = value else {
            return Err(malformed(
                &self.tag,
                format!("the script answered {value:?}"),
            ));
        };
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, flat): (String, Vec<Vec<u8>>) = redis::from_redis_value(row)
                .map_err(|e| malformed(&self.tag, format!("a listed row: {e}")))?;
            let key = format!("{}{id}", self.record_prefix());
            let id = Uuid::parse_str(&id)
                .map_err(|e| malformed(&key, format!("an index names the id {id:?}: {e}")))?;
            if flat.is_empty() {
                tracing::debug!(target: "catga::redis", key = %key,
                    "dead letters: an index names a record that is gone; left out");
                continue;
            }
            records.push(fields::decode(id, flat).map_err(|reason| malformed(&key, reason))?);
        }
        Ok(records)
    }

    async fn put_record(&self, record: &DeadLetterRecord) -> Result<(), RedisStoreError> {
        let call = self.put_call(PUT, record)?;
        let _: i64 = self
            .conn
            .invoke(PUT, &self.record_key(record.id), &call)
            .await?;
        Ok(())
    }

    async fn list_records(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, RedisStoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.index("ids");
        let value: Value = self
            .conn
            .invoke(
                LIST,
                &key,
                scripts::LIST
                    .key(&key)
                    .arg(self.record_prefix())
                    .arg(count_arg(limit) - 1),
            )
            .await?;
        self.records(LIST, value)
    }

    async fn take_record(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, RedisStoreError> {
        let key = self.record_key(id);
        let value: Option<(i64, Vec<Vec<u8>>)> = self
            .conn
            .invoke(
                TAKE,
                &key,
                scripts::TAKE
                    .key(&key)
                    .key(self.index("ids"))
                    .key(self.index("by_time"))
                    .key(self.index("by_message"))
                    .arg(id.to_string()),
            )
            .await?;
        let Some((taken, flat)) = value else {
            return Ok(None);
        };
        if taken != 1 {
            let reason = fields::decode(id, flat).err().unwrap_or_else(|| {
                "the record is not whole (checked by the take script); left where it is".into()
            });
            return Err(RedisStoreError::malformed(
                TAKE,
                key,
                format!("{reason}; the record was left where it is"),
            ));
        }
        match fields::decode(id, flat.clone()) {
            Ok(record) => Ok(Some(record)),
            Err(reason) => {
                // The script and `decode` check the same rules, so this is not expected; the
                // record is gone from the server, so this log is its only copy.
                let lossy: Vec<String> = flat
                    .iter()
                    .map(|item| String::from_utf8_lossy(item).into_owned())
                    .collect();
                tracing::error!(target: "catga::redis", key = %key, reason = %reason, fields = ?lossy,
                    "dead letters: a record was taken that cannot be read; this log is its only copy");
                Err(RedisStoreError::malformed(TAKE, key, reason))
            }
        }
    }

    async fn count_records(&self) -> Result<usize, RedisStoreError> {
        let key = self.index("ids");
        self.conn
            .run(COUNT, &key, redis::cmd("ZCARD").arg(&key))
            .await
    }
}

impl DeadLetterStore for RedisDeadLetterStore {
    /// One round trip (`EVALSHA`): the record and its index entries, atomically. Refuses an
    /// oversized record with [`RedisStoreError::TooLarge`].
    async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
        Ok(self.put_record(&record).await?)
    }

    /// One round trip (`EVALSHA`).
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
        Ok(self.list_records(limit).await?)
    }

    /// One round trip (`EVALSHA`): of concurrent takes of one id, one gets it.
    async fn take(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
        Ok(self.take_record(id).await?)
    }

    /// One round trip (`ZCARD`, constant time).
    async fn count(&self) -> Result<usize, BoxError> {
        Ok(self.count_records().await?)
    }
}
