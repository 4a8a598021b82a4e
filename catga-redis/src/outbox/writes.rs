//! The unit of work: the writes a handler queues, applied with its events and its inbox
//! record in one script, or not at all.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use catga_core::envelope::Envelope;
use redis::{Cmd, FromRedisValue, ToRedisArgs};

use super::Shared;
use super::error::RedisOutboxError;
use super::keys::OutboxKeys;
use crate::store::StoreConn;
use crate::store::UnitCompletion;

tokio::task_local! {
    /// The unit of the dispatch being polled. A task-local, scoped to the future of one
    /// handler's pipeline, rather than a value in the `Context`: the handlers of one event
    /// share a context but each has a unit of its own.
    static CURRENT: Arc<RedisWrites>;
}

/// The most arguments one queued command may have: the commit script spreads a command's
/// arguments with Lua's `unpack`, whose stack holds about 8,000 values.
const MAX_ARGS: usize = 7_900;

/// Durations beyond this are taken as this (100 years), as the stores do.
const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The writes of the current dispatch, applied when it commits: together with the events the
/// handler published and the inbox record, in one Lua script (one round trip), or not at all
/// when the handler fails.
///
/// [`RedisOutbox`](super::RedisOutbox) (commands) and [`RedisInbox`](crate::RedisInbox)
/// (commands and event handlers) open it around the handler; the outer one commits, the
/// inner one joins. A handler reaches it with [`RedisWrites::current`] and queues writes with
/// the typed methods, which know their keys, or [`command`](Self::command) for anything
/// else.
///
/// * **Writes are queued, not sent.** A read ([`read`](Self::read), or any client of your
///   own) goes to Redis at once and does not see the writes this handler queued. Nor is it
///   isolated: another client may change what was read before the unit commits, so prefer
///   writes that do not depend on a read (`INCRBY`, `SADD`, `HSET` of a field of its own).
/// * **All or nothing.** The script checks the typed writes before applying any (a key of
///   the wrong type, a value that is not an integer) and, when the unit holds a write it cannot
///   check (a [`command`](Self::command), an increment near the integer limits), saves the
///   declared keys first (`DUMP`) and restores them if a write fails. Either way a refused
///   write leaves the unit unapplied: no write, no event, no inbox record, and the dispatch
///   fails with [`RedisOutboxError::Refused`]. Keys a command touches but does not declare
///   are not restored: declare every key.
/// * **Redis Cluster.** Every key the script touches must be in one slot: the outbox's keys
///   share the hash tag `{P:outbox}`, so write your keys under it too, with
///   [`key`](Self::key). On a single server (or Sentinel) any key works.
///
/// ```no_run
/// use catga_core::prelude::*;
/// use catga_redis::RedisWrites;
///
/// #[command(output = u64)]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct PlaceOrder { pub id: u64, pub total: u64 }
///
/// #[event]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct OrderPlaced { pub id: u64 }
///
/// #[handler]
/// async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, catga_core::error::BoxError> {
///     let writes = RedisWrites::current()?;
///     let order = writes.key(&format!("order:{}", cmd.id));   // `{P:outbox}:order:7`
///     writes.hset(&order, "total", cmd.total)?;
///     writes.incr_by(&writes.key("orders:count"), 1)?;
///     ctx.publish(OrderPlaced { id: cmd.id })?;              // stored with the writes
///     Ok(cmd.id)
/// }
/// ```
pub struct RedisWrites {
    conn: StoreConn,
    keys: Arc<OutboxKeys>,
    unit: Mutex<Unit>,
}

impl std::fmt::Debug for RedisWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWrites")
            .field("stream", &self.keys.stream)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// What a unit holds until it commits.
#[derive(Default)]
pub(crate) struct Unit {
    pub(crate) ended: bool,
    pub(crate) commands: Vec<Queued>,
    pub(crate) events: Vec<Pending>,
    /// The outbox whose relay may publish the events from memory after the commit.
    pub(crate) relay: Option<Arc<Shared>>,
    pub(crate) inbox: Option<InboxRecord>,
    /// The idempotent reply the commit records for the `Idempotency` behaviour around the
    /// handler; set by the committing layer just before the commit.
    pub(crate) reply: Option<UnitCompletion>,
}

/// One queued write.
pub(crate) struct Queued {
    /// What the commit script checks before applying it (see `commit.lua`).
    pub(crate) check: &'static str,
    /// The command and its arguments.
    pub(crate) args: Vec<Vec<u8>>,
    /// The keys it touches.
    pub(crate) keys: Vec<String>,
}

/// An event to store with the unit.
pub(crate) struct Pending {
    pub(crate) envelope: Envelope,
    /// The ordering key, escaped: the suffix of its key list.
    pub(crate) ordering: String,
}

/// The inbox record a unit writes: its key, the reply to keep, how long.
pub(crate) struct InboxRecord {
    pub(crate) key: String,
    pub(crate) reply: Vec<u8>,
    pub(crate) ttl_ms: u64,
}

/// How much a unit held when a joining layer started: what its failure takes back.
pub(crate) struct Mark {
    commands: usize,
    events: usize,
    inbox: bool,
}

impl RedisWrites {
    /// The current dispatch's unit of work.
    ///
    /// # Errors
    /// [`RedisOutboxError::NoUnit`] outside a dispatch a `RedisOutbox` (commands) or
    /// `RedisInbox` (commands and event handlers) runs: no such layer, a query, or a task the
    /// handler spawned.
    pub fn current() -> Result<Arc<RedisWrites>, RedisOutboxError> {
        CURRENT
            .try_with(Arc::clone)
            .map_err(|_| RedisOutboxError::NoUnit)
    }

    /// A key of the handler's own in the outbox's Cluster slot: `{P:outbox}:<suffix>`.
    pub fn key(&self, suffix: &str) -> String {
        self.keys.user(suffix)
    }

    /// How many writes are queued.
    pub fn queued(&self) -> usize {
        self.lock().commands.len()
    }

    /// Runs `cmd` now, on the primary, outside the unit: a read, which does not see the
    /// queued writes.
    ///
    /// # Errors
    /// [`RedisOutboxError::Store`] if the server failed or refused it.
    pub async fn read<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisOutboxError> {
        self.conn
            .run("unit of work: read", &self.keys.stream, cmd)
            .await
            .map_err(RedisOutboxError::Store)
    }

    /// Queues `SET key value`.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] unless `value` is one argument;
    /// [`RedisOutboxError::ReservedKey`], [`RedisOutboxError::UnitEnded`].
    pub fn set<V: ToRedisArgs>(&self, key: &str, value: V) -> Result<(), RedisOutboxError> {
        let value = one("SET", value)?;
        self.queue("=string", "SET", key, vec![value])
    }

    /// Queues `SET key value PX ttl` (a `ttl` under a millisecond is one).
    ///
    /// # Errors
    /// As [`set`](Self::set).
    pub fn set_px<V: ToRedisArgs>(
        &self,
        key: &str,
        value: V,
        ttl: Duration,
    ) -> Result<(), RedisOutboxError> {
        let value = one("SET", value)?;
        let ms = millis(ttl).to_string().into_bytes();
        self.queue("=string", "SET", key, vec![value, b"PX".to_vec(), ms])
    }

    /// Queues `DEL key`.
    ///
    /// # Errors
    /// [`RedisOutboxError::ReservedKey`], [`RedisOutboxError::UnitEnded`].
    pub fn del(&self, key: &str) -> Result<(), RedisOutboxError> {
        self.queue("=none", "DEL", key, Vec::new())
    }

    /// Queues `INCRBY key by`. Checked before the unit is applied: a value that is not an
    /// integer refuses the whole unit.
    ///
    /// # Errors
    /// [`RedisOutboxError::ReservedKey`], [`RedisOutboxError::UnitEnded`].
    pub fn incr_by(&self, key: &str, by: i64) -> Result<(), RedisOutboxError> {
        self.queue("istring", "INCRBY", key, vec![by.to_string().into_bytes()])
    }

    /// Queues `HSET key field value`.
    ///
    /// # Errors
    /// As [`set`](Self::set), for `field` and `value`.
    pub fn hset<F: ToRedisArgs, V: ToRedisArgs>(
        &self,
        key: &str,
        field: F,
        value: V,
    ) -> Result<(), RedisOutboxError> {
        let args = vec![one("HSET", field)?, one("HSET", value)?];
        self.queue("+hash", "HSET", key, args)
    }

    /// Queues `HDEL key field…` (`fields`: one value or several).
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] for no field; as [`del`](Self::del).
    pub fn hdel<F: ToRedisArgs>(&self, key: &str, fields: F) -> Result<(), RedisOutboxError> {
        let fields = some("HDEL", fields)?;
        self.queue("-hash", "HDEL", key, fields)
    }

    /// Queues `SADD key member…`.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] for no member; as [`del`](Self::del).
    pub fn sadd<M: ToRedisArgs>(&self, key: &str, members: M) -> Result<(), RedisOutboxError> {
        let members = some("SADD", members)?;
        self.queue("+set", "SADD", key, members)
    }

    /// Queues `SREM key member…`.
    ///
    /// # Errors
    /// As [`sadd`](Self::sadd).
    pub fn srem<M: ToRedisArgs>(&self, key: &str, members: M) -> Result<(), RedisOutboxError> {
        let members = some("SREM", members)?;
        self.queue("-set", "SREM", key, members)
    }

    /// Queues `ZADD key score member`.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] for a NaN score; as [`set`](Self::set).
    pub fn zadd<M: ToRedisArgs>(
        &self,
        key: &str,
        member: M,
        score: f64,
    ) -> Result<(), RedisOutboxError> {
        if score.is_nan() {
            return Err(RedisOutboxError::InvalidWrite {
                command: "ZADD",
                reason: "the score is NaN".to_string(),
            });
        }
        let args = vec![score.to_string().into_bytes(), one("ZADD", member)?];
        self.queue("+zset", "ZADD", key, args)
    }

    /// Queues `ZREM key member…`.
    ///
    /// # Errors
    /// As [`sadd`](Self::sadd).
    pub fn zrem<M: ToRedisArgs>(&self, key: &str, members: M) -> Result<(), RedisOutboxError> {
        let members = some("ZREM", members)?;
        self.queue("-zset", "ZREM", key, members)
    }

    /// Queues `RPUSH key value…`.
    ///
    /// # Errors
    /// As [`sadd`](Self::sadd).
    pub fn rpush<V: ToRedisArgs>(&self, key: &str, values: V) -> Result<(), RedisOutboxError> {
        let values = some("RPUSH", values)?;
        self.queue("+list", "RPUSH", key, values)
    }

    /// Queues `LPUSH key value…`.
    ///
    /// # Errors
    /// As [`sadd`](Self::sadd).
    pub fn lpush<V: ToRedisArgs>(&self, key: &str, values: V) -> Result<(), RedisOutboxError> {
        let values = some("LPUSH", values)?;
        self.queue("+list", "LPUSH", key, values)
    }

    /// Queues `PEXPIRE key ttl` (a `ttl` under a millisecond is one).
    ///
    /// # Errors
    /// As [`del`](Self::del).
    pub fn expire(&self, key: &str, ttl: Duration) -> Result<(), RedisOutboxError> {
        let ms = millis(ttl).to_string().into_bytes();
        self.queue("*", "PEXPIRE", key, vec![ms])
    }

    /// Queues `XADD key * field value…` on a stream of the handler's own.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] for no field; as [`set`](Self::set).
    pub fn xadd<F: ToRedisArgs, V: ToRedisArgs>(
        &self,
        key: &str,
        fields: &[(F, V)],
    ) -> Result<(), RedisOutboxError> {
        if fields.is_empty() {
            return Err(RedisOutboxError::InvalidWrite {
                command: "XADD",
                reason: "an entry needs at least one field".to_string(),
            });
        }
        let mut args = vec![b"*".to_vec()];
        for (field, value) in fields {
            args.push(one("XADD", field)?);
            args.push(one("XADD", value)?);
        }
        self.queue("+stream", "XADD", key, args)
    }

    /// Queues any write command, `cmd` (built with `redis::cmd`), declaring the keys it
    /// touches. The commit script cannot check such a command in advance, so a unit holding
    /// one saves its declared keys before applying anything and restores them if a write
    /// fails: declare every key the command touches.
    ///
    /// # Errors
    /// [`RedisOutboxError::InvalidWrite`] for an empty command, a cursor argument or more
    /// than 7,900 arguments; [`RedisOutboxError::ReservedKey`],
    /// [`RedisOutboxError::UnitEnded`].
    pub fn command(&self, cmd: Cmd, keys: &[&str]) -> Result<(), RedisOutboxError> {
        let mut args = Vec::with_capacity(cmd.args_iter().len());
        for arg in cmd.args_iter() {
            match arg {
                redis::Arg::Simple(bytes) => args.push(bytes.to_vec()),
                _ => {
                    return Err(RedisOutboxError::InvalidWrite {
                        command: "command",
                        reason: "a cursor argument cannot be queued".to_string(),
                    });
                }
            }
        }
        if args.is_empty() {
            return Err(RedisOutboxError::InvalidWrite {
                command: "command",
                reason: "the command is empty".to_string(),
            });
        }
        self.push(Queued {
            check: "r",
            args,
            keys: keys.iter().map(|k| (*k).to_string()).collect(),
        })
    }

    fn queue(
        &self,
        check: &'static str,
        command: &'static str,
        key: &str,
        rest: Vec<Vec<u8>>,
    ) -> Result<(), RedisOutboxError> {
        let mut args = Vec::with_capacity(rest.len() + 2);
        args.push(command.as_bytes().to_vec());
        args.push(key.as_bytes().to_vec());
        args.extend(rest);
        self.push(Queued {
            check,
            args,
            keys: vec![key.to_string()],
        })
    }

    fn push(&self, queued: Queued) -> Result<(), RedisOutboxError> {
        if let Some(key) = queued.keys.iter().find(|k| self.keys.is_reserved(k)) {
            return Err(RedisOutboxError::ReservedKey { key: key.clone() });
        }
        if queued.args.len() > MAX_ARGS {
            return Err(RedisOutboxError::InvalidWrite {
                command: "command",
                reason: format!(
                    "{} arguments; the commit script takes at most {MAX_ARGS} per command: split it",
                    queued.args.len()
                ),
            });
        }
        self.with_unit(|unit| unit.commands.push(queued))
    }

    pub(crate) fn open(conn: StoreConn, keys: Arc<OutboxKeys>) -> Arc<RedisWrites> {
        Arc::new(RedisWrites {
            conn,
            keys,
            unit: Mutex::new(Unit::default()),
        })
    }

    /// Runs `future` with `writes` as the current unit.
    pub(crate) async fn scope<F: Future>(writes: Arc<RedisWrites>, future: F) -> F::Output {
        CURRENT.scope(writes, future).await
    }

    pub(crate) fn keys(&self) -> &OutboxKeys {
        &self.keys
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Unit> {
        self.unit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the unit, unless it ended.
    pub(crate) fn with_unit<R>(
        &self,
        change: impl FnOnce(&mut Unit) -> R,
    ) -> Result<R, RedisOutboxError> {
        let mut unit = self.lock();
        if unit.ended {
            return Err(RedisOutboxError::UnitEnded);
        }
        Ok(change(&mut unit))
    }

    /// What the unit holds now, for [`rollback_to`](Self::rollback_to).
    pub(crate) fn mark(&self) -> Mark {
        let unit = self.lock();
        Mark {
            commands: unit.commands.len(),
            events: unit.events.len(),
            inbox: unit.inbox.is_some(),
        }
    }

    /// Drops what was queued since `mark`: a joining layer whose dispatch failed (a retried
    /// attempt must not leave its writes in the unit of the outer layer).
    pub(crate) fn rollback_to(&self, mark: &Mark) {
        let mut unit = self.lock();
        unit.commands.truncate(mark.commands);
        unit.events.truncate(mark.events);
        if !mark.inbox {
            unit.inbox = None;
        }
    }

    /// Ends the unit and takes what it holds; later writes fail with `UnitEnded`.
    pub(crate) fn end(&self) -> Unit {
        let mut unit = self.lock();
        let taken = std::mem::take(&mut *unit);
        unit.ended = true;
        taken
    }
}

/// `value` as exactly one argument.
fn one<V: ToRedisArgs>(command: &'static str, value: V) -> Result<Vec<u8>, RedisOutboxError> {
    let mut args = value.to_redis_args();
    if args.len() != 1 {
        return Err(RedisOutboxError::InvalidWrite {
            command,
            reason: format!(
                "a value here is one argument, not {}: pass a single value",
                args.len()
            ),
        });
    }
    Ok(args.swap_remove(0))
}

/// `values` as one argument or more.
fn some<V: ToRedisArgs>(
    command: &'static str,
    values: V,
) -> Result<Vec<Vec<u8>>, RedisOutboxError> {
    let args = values.to_redis_args();
    if args.is_empty() {
        return Err(RedisOutboxError::InvalidWrite {
            command,
            reason: "no value: give at least one".to_string(),
        });
    }
    Ok(args)
}

/// Whole milliseconds, at least 1 and at most 100 years.
pub(crate) fn millis(ttl: Duration) -> u64 {
    let ms = ttl.min(MAX_TTL).as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}
