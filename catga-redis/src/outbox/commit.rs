//! Committing a unit of work: one `EVALSHA` of `commit.lua` (the writes, the events, the
//! inbox record and the wake-up), or one `SET … NX PX … GET` for an inbox record alone.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

use catga_core::error::{Error, ErrorKind};
use catga_core::message::MessageInfo;
use catga_core::payload::Payload;
use catga_core::store::idempotency::PendingReply;
use redis::{Script, Value};
use uuid::Uuid;

use super::error::{RedisOutboxError, dispatch_error};
use super::keys::{ORDERING_FIELD, OutboxKeys};
use super::round::Committed;
use super::writes::{RedisWrites, Unit};
use crate::entry::each_field;
use crate::store::{StoreConn, UnitCompletion};

static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("commit.lua")));

/// The `PUBLISH` payload of entries the committing process's relay publishes from memory:
/// other relays leave them to it. Entries announced as [`PLAIN`] are claimed by whichever
/// relay hears.
pub(crate) const FAST: &str = "fast";
pub(crate) const PLAIN: &str = "plain";

/// What a commit did.
pub(crate) enum Outcome {
    /// Applied (or nothing to apply); whether the unit's idempotent reply was recorded with
    /// it (a key the idempotency store did not write is left to the behaviour, which reports
    /// it).
    Applied { reply_recorded: bool },
    /// The inbox record existed: nothing applied; the reply kept with the record.
    Duplicate(Vec<u8>),
}

/// Runs `work` in the current dispatch's unit of work if it has one (an outer `RedisOutbox`
/// or `RedisInbox` opened it and commits it), else in a new one, committed when `work`
/// succeeds and dropped when it fails. A joining call that fails takes back what it queued.
///
/// The committing call also records the reply of an `Idempotency` behaviour around the
/// handler when its store can be written by this commit ([`PendingReply`]): `dispatch`
/// names the handler's dispatch (message, handler, message id) so that a dispatch started
/// inside the handler never records the outer one's reply.
///
/// Returns `work`'s value and, when this call committed, what the commit did.
pub(crate) async fn within<P, F, Fut>(
    conn: &StoreConn,
    keys: &Arc<OutboxKeys>,
    dispatch: Dispatch,
    work: F,
) -> Result<(P::Output, Option<Outcome>), Error>
where
    P: Payload,
    F: FnOnce(Arc<RedisWrites>) -> Fut,
    Fut: Future<Output = Result<P::Output, Error>>,
{
    let Dispatch { info, handler, .. } = dispatch;
    let message = info.name();
    if let Ok(writes) = RedisWrites::current() {
        if writes.keys().stream != keys.stream {
            let error = RedisOutboxError::InvalidOption {
                option: "stores",
                value: format!("{:?}", keys.stream),
                reason: "a `RedisInbox` and a `RedisOutbox` around one handler must use stores of one server and prefix: one unit of work commits both",
            };
            return Err(dispatch_error(message, handler, error));
        }
        let mark = writes.mark();
        let outcome = work(Arc::clone(&writes)).await;
        if outcome.is_err() {
            writes.rollback_to(&mark);
        }
        return outcome.map(|value| (value, None));
    }
    let writes = RedisWrites::open(conn.clone(), Arc::clone(keys));
    let outcome = RedisWrites::scope(Arc::clone(&writes), work(Arc::clone(&writes))).await;
    // Ended either way: a handle the handler kept can no longer queue anything.
    let mut unit = writes.end();
    let value = outcome?;
    let pending = record_reply::<P>(conn, keys, &dispatch, &mut unit, &value);
    let committed = commit(conn, keys, unit)
        .await
        .map_err(|error| dispatch_error(message, handler, error))?;
    if let (
        Some(pending),
        Outcome::Applied {
            reply_recorded: true,
        },
    ) = (pending, &committed)
    {
        pending.recorded();
    }
    Ok((value, Some(committed)))
}

/// The dispatch a unit of work belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Dispatch {
    pub(crate) info: &'static MessageInfo,
    pub(crate) handler: Option<&'static str>,
    pub(crate) message_id: Uuid,
}

/// Puts the pending idempotent reply of `dispatch` into `unit` when this commit can record
/// it: the unit has something to commit anyway (recording a reply alone is what the
/// behaviour does itself, at the same cost) and the store is one this commit can write.
fn record_reply<P: Payload>(
    conn: &StoreConn,
    keys: &OutboxKeys,
    dispatch: &Dispatch,
    unit: &mut Unit,
    output: &P::Output,
) -> Option<Arc<PendingReply>> {
    if unit.commands.is_empty() && unit.events.is_empty() && unit.inbox.is_none() {
        return None;
    }
    let pending =
        PendingReply::current(dispatch.info.name(), dispatch.handler, dispatch.message_id)?;
    // The inbox record keeps the same bytes (`encode_output`); encode once.
    let encoded;
    let reply: &[u8] = match &unit.inbox {
        Some(inbox) => &inbox.reply,
        None => {
            encoded = P::encode_output(dispatch.info, output).ok()?;
            &encoded
        }
    };
    unit.reply = Some(UnitCompletion::of(conn, &keys.stream, &pending, reply)?);
    Some(pending)
}

/// The reply a duplicate gets: the one kept with the inbox record, decoded.
pub(crate) fn replay<P: Payload>(
    info: &'static MessageInfo,
    reply: &[u8],
) -> Result<P::Output, Error> {
    let bytes: &[u8] = if reply.is_empty() { b"null" } else { reply };
    P::decode_output(info, bytes).map_err(|source| {
        ErrorKind::Codec {
            message: info.name().to_string(),
            source,
        }
        .into()
    })
}

/// Applies `unit`: nothing to send for an empty unit, one `SET NX` for an inbox record
/// alone, else one script.
pub(crate) async fn commit(
    conn: &StoreConn,
    keys: &OutboxKeys,
    unit: Unit,
) -> Result<Outcome, RedisOutboxError> {
    if unit.commands.is_empty() && unit.events.is_empty() && unit.reply.is_none() {
        let Some(inbox) = unit.inbox else {
            return Ok(Outcome::Applied {
                reply_recorded: false,
            });
        };
        // Alone, the record needs no script: a concurrent duplicate that set it first makes
        // this one a duplicate too, with the first one's reply.
        let mut set = redis::cmd("SET");
        set.arg(&inbox.key)
            .arg(&inbox.reply)
            .arg("NX")
            .arg("PX")
            .arg(inbox.ttl_ms)
            .arg("GET");
        let prior: Option<Vec<u8>> = conn
            .run("inbox: record", &inbox.key, &set)
            .await
            .map_err(RedisOutboxError::Store)?;
        return Ok(match prior {
            Some(reply) => Outcome::Duplicate(reply),
            None => Outcome::Applied {
                reply_recorded: false,
            },
        });
    }
    let relay = unit.relay.clone();
    // Published from memory by this process's relay, if one runs here.
    let fast = relay
        .as_ref()
        .is_some_and(|shared| shared.fast_taken.load(Ordering::Acquire));
    let reply: Value = {
        let mut invocation = COMMIT.prepare_invoke();
        if let Some(inbox) = &unit.inbox {
            invocation.key(&inbox.key);
        }
        if let Some(reply) = &unit.reply {
            invocation.key(&reply.key);
        }
        invocation.key(&keys.stream);
        // Lua indexes from 1: the stream is KEYS[s], the lists follow it.
        let s = 1 + usize::from(unit.inbox.is_some()) + usize::from(unit.reply.is_some());
        let mut lists: Vec<String> = Vec::new();
        let mut list_index: HashMap<&str, usize> = HashMap::new();
        for event in &unit.events {
            if !list_index.contains_key(event.ordering.as_str()) {
                list_index.insert(&event.ordering, s + 1 + lists.len());
                lists.push(keys.list(&event.ordering));
            }
        }
        for list in &lists {
            invocation.key(list);
        }
        let first_key = s + 1 + lists.len();
        let mut declared: Vec<&str> = Vec::new();
        for queued in &unit.commands {
            for key in &queued.keys {
                if !declared.contains(&key.as_str()) {
                    declared.push(key);
                }
            }
        }
        for key in &declared {
            invocation.key(*key);
        }
        match &unit.inbox {
            Some(inbox) => invocation.arg("1").arg(&inbox.reply).arg(inbox.ttl_ms),
            None => invocation.arg("0").arg("").arg(0),
        };
        invocation
            .arg(&keys.notify)
            .arg(if fast { FAST } else { PLAIN })
            .arg(first_key)
            .arg(unit.events.len())
            .arg(unit.commands.len());
        match &unit.reply {
            Some(reply) => invocation
                .arg("1")
                .arg(&reply.value)
                .arg(reply.ttl_ms)
                .arg(&reply.channel),
            None => invocation.arg("0").arg("").arg(0).arg(""),
        };
        for queued in &unit.commands {
            invocation.arg(queued.check).arg(queued.args.len());
            for arg in &queued.args {
                invocation.arg(arg.as_slice());
            }
        }
        for event in &unit.events {
            let mut fields: Vec<Vec<u8>> = Vec::with_capacity(24);
            each_field(&event.envelope, |name, value| {
                fields.push(name.to_vec());
                fields.push(value.to_vec());
            });
            fields.push(ORDERING_FIELD.as_bytes().to_vec());
            fields.push(event.ordering.as_bytes().to_vec());
            let list = list_index
                .get(event.ordering.as_str())
                .copied()
                .unwrap_or(0);
            invocation.arg(list).arg(fields.len());
            for field in &fields {
                invocation.arg(field.as_slice());
            }
        }
        conn.invoke("outbox: commit", &keys.stream, &invocation)
            .await
            .map_err(RedisOutboxError::Store)?
    };
    let (reply_recorded, ids) = match read_reply(&keys.stream, reply, &unit)? {
        Reply::Ok {
            reply_recorded,
            ids,
        } => (reply_recorded, ids),
        Reply::Duplicate(reply) => return Ok(Outcome::Duplicate(reply)),
    };
    if ids.len() != unit.events.len() {
        return Err(RedisOutboxError::malformed(
            "outbox: commit",
            &keys.stream,
            "the commit script returned another number of entry ids than events",
        ));
    }
    let stored = ids.len();
    if let Some(shared) = relay
        && stored > 0
    {
        let committed = ids
            .into_iter()
            .zip(unit.events)
            .map(|(id, event)| Committed {
                id,
                ordering: event.ordering,
                envelope: event.envelope,
            })
            .collect();
        metrics::counter!("catga_outbox_written_total").increment(stored as u64);
        shared.committed_here(fast, committed);
    }
    Ok(Outcome::Applied { reply_recorded })
}

/// The commit script's answer.
enum Reply {
    /// Applied: whether the idempotent reply was recorded, and the events' entry ids.
    Ok {
        reply_recorded: bool,
        ids: Vec<String>,
    },
    Duplicate(Vec<u8>),
}

/// The script's reply; a refusal as the error it is.
fn read_reply(stream: &str, reply: Value, unit: &Unit) -> Result<Reply, RedisOutboxError> {
    let malformed = |why: &str| RedisOutboxError::malformed("outbox: commit", stream, why);
    let Value::Array(items) = reply else {
        return Err(malformed("the commit script's reply is not an array"));
    };
    let mut items = items.into_iter();
    let status = items.next().and_then(text).unwrap_or_default();
    match status.as_str() {
        "ok" => {
            let reply_recorded = match items.next().and_then(text).as_deref() {
                Some("1") => true,
                Some("0") => false,
                _ => return Err(malformed("the commit script's reply has no reply flag")),
            };
            Ok(Reply::Ok {
                reply_recorded,
                ids: items.filter_map(text).collect(),
            })
        }
        "duplicate" => Ok(Reply::Duplicate(
            items.next().and_then(bytes).unwrap_or_default(),
        )),
        "refused" | "partial" => {
            let index = items
                .next()
                .and_then(text)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let reason = items.next().and_then(text).unwrap_or_default();
            let command = index
                .checked_sub(1)
                .and_then(|i| unit.commands.get(i))
                .and_then(|q| q.args.first())
                .map_or_else(
                    || "outbox".to_string(),
                    |name| String::from_utf8_lossy(name).into_owned(),
                );
            tracing::debug!(target: "catga::redis", index, command = %command, reason = %reason,
                "redis unit of work: a write was refused");
            Err(if status == "refused" {
                RedisOutboxError::Refused {
                    index,
                    command,
                    reason,
                }
            } else {
                RedisOutboxError::PartiallyApplied {
                    index,
                    command,
                    reason,
                }
            })
        }
        _ => Err(malformed("the commit script's reply has an unknown status")),
    }
}

pub(crate) fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub(crate) fn text(value: Value) -> Option<String> {
    bytes(value).and_then(|b| String::from_utf8(b).ok())
}
