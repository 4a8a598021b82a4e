//! The schedule store on Redis: scheduled messages kept by any instance until they are due,
//! then claimed by the scheduler's leader, fenced by the tokens of its lease. How it works is
//! documented on [`RedisScheduleStore`]; a message's hash fields are in `fields.rs`, the Lua
//! scripts in `scripts.rs`, how their answers are read in `reply.rs`.

mod fields;
mod reply;
mod scripts;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, StaleToken};
use catga_core::store::schedule::{ScheduleStore, Scheduled};
use redis::{Script, Value};
use uuid::Uuid;

use super::DEFAULT_MAX_WRITE_BYTES;
use super::conn::StoreConn;
use super::connect::RedisStores;
use super::error::RedisStoreError;
use super::event::outcome::typed;
use super::idempotency::write_limit;
use reply::{Answer, flag, unexpected};

const SCHEDULE: &str = "schedule: schedule";
const CANCEL: &str = "schedule: cancel";
const CLAIM_DUE: &str = "schedule: claim_due";
const FIRED: &str = "schedule: fired";
const NEXT_DUE: &str = "schedule: next_due";
const LOAD_SCRIPTS: &str = "schedule: load scripts";

/// Longer claim leases are taken as this: 100 years.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A [`ScheduleStore`] on Redis, shared by every instance on the same server and key prefix:
/// any instance schedules and cancels; the instance that leads (a
/// [`Scheduler`](catga_core::cluster::Scheduler) on a
/// [`Leadership`](catga_core::cluster::Leadership)) claims due messages and removes them once
/// fired, with its lease's fencing token. Make one with [`RedisStores::schedules`]. Cheap to
/// clone; does no I/O until used.
///
/// # Keys
/// Every key starts with the hash tag `{<prefix>:schedule}`, so each script runs on one Redis
/// Cluster slot (one node holds a prefix's scheduled messages):
///
/// | key | type | holds |
/// |---|---|---|
/// | `{p:schedule}:msg:<id>` | hash | one message ([`message_key`](Self::message_key)): `due` (µs since 1970), `fields` (how many follow) and `<i>.<name>`, the envelope's fields as the transport writes them to a stream entry, numbered to keep their order (the payload byte for byte) |
/// | `{p:schedule}:due` | sorted set | every kept message's id, scored by its due time in µs ([`due_key`](Self::due_key)) |
/// | `{p:schedule}:claims` | sorted set | claimed ids, scored by the end of the claim in ms ([`claims_key`](Self::claims_key)) |
/// | `{p:schedule}:fence` | string | the highest fencing token given, decimal ([`fence_key`](Self::fence_key)) |
///
/// Claims take messages in order of the due index: by due time, then (for one due time) by id,
/// hyphenated, which for the UUID v7 message ids the scheduler makes is the order they were
/// scheduled in. A score is a double, exact for whole microseconds within 2^53 of 1970 (about
/// 285 years, 1685 to 2255): a due time beyond that is refused with
/// [`RedisStoreError::InvalidOption`] (option `due`), before anything is sent. Due times are
/// kept to the microsecond, the nanoseconds dropped (a message falls due a little early rather
/// than late).
///
/// # Round trips
/// Every operation is one round trip, one Lua script (`EVALSHA`) that reads and changes the
/// keys as one atomic step (Redis runs one script at a time, so of concurrent claimers each
/// message goes to one, and a fence check and what it guards cannot be interleaved):
///
/// | operation | script |
/// |---|---|
/// | `schedule` | if the message's key exists: `false`; else `HSET` its fields and `ZADD` it to `due` |
/// | `cancel` | `DEL` the message, `ZREM` it from `due` and `claims` |
/// | `claim_due` | the fence (refuse a lower token, else `SET` it); walk `due` up to now (`ZRANGEBYSCORE … LIMIT`, 128 at a time), skip ids whose claim runs, `ZADD` each taken id to `claims` until now + lease, answer their hashes (`HGETALL`) |
/// | `fired` | the fence, also for no ids (a heartbeat's fenced write); then as `cancel`, for each id |
/// | `next_due` | walk `due` in order, skipping claimed ids (at most one page more than `claims` holds): the first one's score |
/// | [`load_scripts`](Self::load_scripts) | 1 (`SCRIPT LOAD` of all five) |
///
/// A script the server does not know (`NOSCRIPT`: a restart, a `SCRIPT FLUSH`, a failover) is
/// loaded and the call repeated: two more round trips, once. A claim reads every due message a
/// running claim holds before it finds unclaimed ones, so its cost grows with the messages
/// claimed and not yet fired (a batch or two, normally).
///
/// # Clocks
/// Whether a message is due and whether a claim ran out are judged by the server's clock
/// alone (`TIME`, read by each script; Redis 7 replicates scripts by their effects), so the
/// instances need not agree on the time. A due time is the one the scheduling process gave
/// (its clock, when it scheduled "in an hour"). A step of the server's clock moves every due
/// time and every claim by as much.
///
/// # Durability
/// The server's. With `appendonly no` (and no RDB snapshot) **a restart loses every scheduled
/// message and the fence**: the messages are never fired, and the floor starts again from
/// nothing (a leader paused past its lease is then refused only once a newer leader presents
/// its token again). With RDB snapshots alone, what was scheduled, fired or claimed after the
/// last snapshot is lost or comes back (a fired message may fire again, with the same message
/// id). Keep scheduled messages on a server with `appendonly yes` (`appendfsync always` to lose
/// nothing acknowledged), and `maxmemory-policy noeviction` (the default; an evicting policy
/// may drop a message or the fence). A failover to a replica may lose the last writes
/// (replication is asynchronous).
///
/// # Errors
/// [`RedisStoreError`]s, boxed by the trait, except a refused token: a claim or firing with a
/// token below the floor fails with [`StaleToken`] itself (so
/// [`is_stale`](catga_core::store::schedule::is_stale) recognises it), taking and changing
/// nothing. [`Command`](RedisStoreError::Command) when the server could not be reached or
/// refused (a server that cannot be reached gives one whose
/// [`is_retryable`](RedisStoreError::is_retryable) is true, within the response timeout);
/// [`TooLarge`](RedisStoreError::TooLarge) for a message over
/// [`max_write_bytes`](Self::max_write_bytes), before anything is sent; and
/// [`Malformed`](RedisStoreError::Malformed), naming the key, for what the store never
/// writes: an index or a fence of another type or a fence that is no whole number (nothing is
/// written), a due index entry that is no message id, has a fractional score or names no
/// message, a message key that is no hash or whose fields the store did not write. A claim
/// that takes such an entry fails with `Malformed`; what it claimed with it is claimable
/// again once the claim runs out, and the next claim goes on past it. Delete the key, or
/// [`cancel`](ScheduleStore::cancel) its id: a cancel removes a message's key whatever it holds.
///
/// A [`Scheduler`](catga_core::cluster::Scheduler) on it, firing on the instance that leads
/// through the [`RedisLeaseStore`](super::RedisLeaseStore) of the same stores:
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::Catga;
/// use catga_core::cluster::{Leadership, Scheduler};
/// use catga_redis::store::RedisStores;
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .await?;
/// let app = Catga::builder().build()?;
/// let scheduler = Scheduler::new(app, stores.schedules());
/// let election = Leadership::new(stores.leases(), "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// // Every instance schedules (`scheduler.publish_after(event, delay)`, `send_at`, …); the
/// // one that leads fires due messages, with its lease's fencing token.
/// let running = scheduler.run(&election);
/// // …
/// running.stop().await;
/// election.stop().await; // releases the lease: another instance fires at once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisScheduleStore {
    conn: StoreConn,
    keys: Arc<Keys>,
    max_write_bytes: usize,
}

/// The store's keys.
struct Keys {
    /// `{<prefix>:schedule}:msg:`, the message keys less the id.
    message: String,
    /// `{<prefix>:schedule}:due`.
    due: String,
    /// `{<prefix>:schedule}:claims`.
    claims: String,
    /// `{<prefix>:schedule}:fence`.
    fence: String,
}

impl std::fmt::Debug for RedisScheduleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisScheduleStore")
            .field("due", &self.keys.due)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// The schedule store of these stores' server and prefix (see [`RedisScheduleStore`]), on
    /// their shared connection. Does no I/O.
    pub fn schedules(&self) -> RedisScheduleStore {
        let tag = self.conn.tag("schedule");
        RedisScheduleStore {
            conn: self.conn.clone(),
            keys: Arc::new(Keys {
                message: format!("{tag}:msg:"),
                due: format!("{tag}:due"),
                claims: format!("{tag}:claims"),
                fence: format!("{tag}:fence"),
            }),
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }
}

impl RedisScheduleStore {
    /// The most bytes one message may hold in its hash's fields and values together (default
    /// [`DEFAULT_MAX_WRITE_BYTES`](super::DEFAULT_MAX_WRITE_BYTES), 64 MiB); a larger one is
    /// refused with [`RedisStoreError::TooLarge`] before anything is sent.
    ///
    /// # Errors
    /// [`RedisStoreError::InvalidOption`] for 0 or more than 512 MiB.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, RedisStoreError> {
        self.max_write_bytes = write_limit(bytes)?;
        Ok(self)
    }

    /// The key of the message `id`: `{<prefix>:schedule}:msg:<id>`, a hash.
    pub fn message_key(&self, id: Uuid) -> String {
        format!("{}{id}", self.keys.message)
    }

    /// The due index: `{<prefix>:schedule}:due`, a sorted set of ids by due time (µs).
    pub fn due_key(&self) -> &str {
        &self.keys.due
    }

    /// The running claims: `{<prefix>:schedule}:claims`, a sorted set of ids by the end of
    /// their claim (ms, the server's clock).
    pub fn claims_key(&self) -> &str {
        &self.keys.claims
    }

    /// The fencing floor: `{<prefix>:schedule}:fence`, the highest token given.
    pub fn fence_key(&self) -> &str {
        &self.keys.fence
    }

    /// Loads the store's scripts into the server's script cache: one round trip. Optional: a
    /// call that finds its script missing loads it itself (two more round trips, once).
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] if the server could not be reached or refused a script.
    pub async fn load_scripts(&self) -> Result<(), RedisStoreError> {
        self.conn.load_scripts(LOAD_SCRIPTS, &scripts::all()).await
    }

    /// Runs `script` with `keys` and `args` (errors name `key`): its answer.
    async fn run(
        &self,
        operation: &'static str,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Answer, RedisStoreError> {
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Value = self
            .conn
            .invoke(operation, key, &invocation)
            .await
            .map_err(typed)?;
        reply::answer(operation, key, &self.keys.fence, reply)
    }

    /// Runs a script that never answers stale: its values.
    async fn run_unfenced(
        &self,
        operation: &'static str,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Vec<Value>, RedisStoreError> {
        match self.run(operation, key, script, keys, args).await? {
            Answer::Done(values) => Ok(values),
            Answer::Stale(_) => Err(unexpected(operation, key)),
        }
    }

    async fn schedule_message(&self, message: &Scheduled) -> Result<bool, RedisStoreError> {
        let (fields, due) =
            fields::encode(message).ok_or_else(|| RedisStoreError::InvalidOption {
                option: "due",
                value: format!("{:?}", message.due),
                reason: "a due time within 285 years of 1970 (a score holds whole µs to 2^53)",
            })?;
        if fields.bytes > self.max_write_bytes {
            return Err(RedisStoreError::TooLarge {
                operation: SCHEDULE,
                size: fields.bytes,
                limit: self.max_write_bytes,
            });
        }
        let key = self.message_key(message.id());
        let (id, due) = (message.id().to_string(), due.to_string());
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + 2 * fields.pairs.len());
        args.push(id.as_bytes());
        args.push(due.as_bytes());
        for (name, value) in &fields.pairs {
            args.push(name);
            args.push(value);
        }
        let keys = [key.as_str(), &self.keys.due, &self.keys.claims];
        let values = self
            .run_unfenced(SCHEDULE, &key, &scripts::SCHEDULE, &keys, &args)
            .await?;
        flag(SCHEDULE, &key, &values)
    }

    async fn cancel_message(&self, id: Uuid) -> Result<bool, RedisStoreError> {
        let key = self.message_key(id);
        let id = id.to_string();
        let keys = [key.as_str(), &self.keys.due, &self.keys.claims];
        let values = self
            .run_unfenced(CANCEL, &key, &scripts::CANCEL, &keys, &[id.as_bytes()])
            .await?;
        flag(CANCEL, &key, &values)
    }

    async fn claim(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        let presented = token.get().to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX).to_string();
        let lease = lease_millis(lease).to_string();
        let keys = [self.keys.fence.as_str(), &self.keys.due, &self.keys.claims];
        let args: [&[u8]; 4] = [
            presented.as_bytes(),
            limit.as_bytes(),
            lease.as_bytes(),
            self.keys.message.as_bytes(),
        ];
        let answer = self
            .run(CLAIM_DUE, &self.keys.due, &scripts::CLAIM_DUE, &keys, &args)
            .await?;
        let rows = match answer {
            Answer::Done(rows) => rows,
            Answer::Stale(seen) => {
                return Err(Box::new(StaleToken {
                    presented: token,
                    seen,
                }));
            }
        };
        let mut taken = Vec::with_capacity(rows.len());
        for row in rows {
            let key = |id| self.message_key(id);
            taken.push(reply::claimed(CLAIM_DUE, &self.keys.due, key, row)?);
        }
        Ok(taken)
    }

    async fn fire(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        let presented = token.get().to_string();
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(2 + ids.len());
        args.push(presented.as_bytes());
        args.push(self.keys.message.as_bytes());
        args.extend(ids.iter().map(String::as_bytes));
        let keys = [self.keys.fence.as_str(), &self.keys.due, &self.keys.claims];
        match self
            .run(FIRED, &self.keys.fence, &scripts::FIRED, &keys, &args)
            .await?
        {
            Answer::Done(values) if values.is_empty() => Ok(()),
            Answer::Done(_) => Err(unexpected(FIRED, &self.keys.fence).into()),
            Answer::Stale(seen) => Err(Box::new(StaleToken {
                presented: token,
                seen,
            })),
        }
    }

    async fn earliest_due(&self) -> Result<Option<SystemTime>, RedisStoreError> {
        let due_key = self.keys.due.as_str();
        let keys = [due_key, &self.keys.claims];
        let values = self
            .run_unfenced(NEXT_DUE, due_key, &scripts::NEXT_DUE, &keys, &[])
            .await?;
        reply::next_due(NEXT_DUE, due_key, values)
    }
}

/// A claim lease in whole milliseconds, rounded up; at most 100 years.
fn lease_millis(lease: Duration) -> u64 {
    let lease = lease.min(LONGEST);
    let whole = lease.as_millis() + u128::from(!lease.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(whole).unwrap_or(u64::MAX)
}

impl ScheduleStore for RedisScheduleStore {
    /// One `EVALSHA`. Refuses a message over [`max_write_bytes`](Self::max_write_bytes) or due
    /// beyond 2^53 µs of 1970 before anything is sent.
    async fn schedule(&self, message: &Scheduled) -> Result<bool, BoxError> {
        Ok(self.schedule_message(message).await?)
    }

    /// One `EVALSHA`: removes the message's key whatever it holds.
    async fn cancel(&self, id: Uuid) -> Result<bool, BoxError> {
        Ok(self.cancel_message(id).await?)
    }

    /// One `EVALSHA`: the fence and the claim as one step. A lease is kept in whole
    /// milliseconds, rounded up; over 100 years it is taken as 100 years.
    async fn claim_due(
        &self,
        limit: usize,
        token: FencingToken,
        lease: Duration,
    ) -> Result<Vec<Scheduled>, BoxError> {
        self.claim(limit, token, lease).await
    }

    /// One `EVALSHA`: the fence and the removal as one step (also for no ids, which raises
    /// the floor).
    async fn fired(&self, ids: &[Uuid], token: FencingToken) -> Result<(), BoxError> {
        self.fire(ids, token).await
    }

    /// One `EVALSHA`, on the primary.
    async fn next_due(&self) -> Result<Option<SystemTime>, BoxError> {
        Ok(self.earliest_due().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_whole_milliseconds_rounded_up_at_most_100_years() {
        assert_eq!(lease_millis(Duration::ZERO), 0);
        assert_eq!(lease_millis(Duration::from_nanos(1)), 1);
        assert_eq!(lease_millis(Duration::from_micros(1_001)), 2);
        assert_eq!(lease_millis(Duration::from_millis(300)), 300);
        assert_eq!(
            lease_millis(Duration::MAX),
            u64::try_from(LONGEST.as_millis()).unwrap_or(0)
        );
    }
}
