//! The inbox on Redis: a redelivered message is handled once in effect.
//!
//! Brokers deliver at least once, and so does an outbox relay that died mid-batch.
//! [`RedisInbox`] keeps a record per (handler, message id), `{P:outbox}:inbox:<handler>:<id>`,
//! written by the same script as the handler's writes and events (the unit of work): the
//! record exists exactly when the effects were applied. A message whose record exists is
//! acknowledged without running the handler, whichever instance it reaches and after any
//! restart; a command's reply is kept with the record and returned again.

use std::sync::Arc;
use std::time::Duration;

use catga_core::error::{Error, ErrorKind};
use catga_core::message::MessageKind;
use catga_core::{Behavior, Context, Next, Payload};

use crate::outbox::{
    Dispatch, InboxRecord, OutboxKeys, Outcome, RedisOutboxError, dispatch_error, millis, replay,
    within,
};
use crate::store::{RedisStores, StoreConn};

/// How long a record is kept unless configured: longer than a message is redelivered.
const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The inbox behaviour on Redis: a redelivered command or event is acknowledged without
/// running its handler again; a command's duplicate gets the first reply.
///
/// * **Before the handler**, one `GET` of the record: a message seen before costs that one
///   round trip, and its handler does not run.
/// * **After the handler**, the record is written with the unit of work: by the commit
///   script, together with the handler's writes and events, when there are any (then a
///   concurrent duplicate that lost the race applies nothing, since the script checks the
///   record first); alone, by one `SET … NX PX … GET` (a duplicate that lost the race is
///   reported as a duplicate, with the first one's reply).
/// * **With [`Idempotency`](catga_core::behavior::Idempotency) outside it**, on a store of
///   the same [`RedisStores`] (`stores.idempotency()`), the commit script also records the
///   idempotent reply, after the effects: the behaviour sends no completion of its own, and
///   no moment exists when the effects are applied and the key is still only claimed. (Its
///   claim, before the handler, stays a round trip of its own.)
///
/// Queries pass through. Place it outside [`RedisOutbox`](crate::RedisOutbox) or inside:
/// both join one unit. Records expire after [`ttl`](Self::ttl) (7 days by default): keep it
/// longer than a message can be redelivered (the broker's retention, the outbox's backlog).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::Catga;
/// use catga_redis::RedisInbox;
/// use catga_redis::store::RedisStores;
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379").prefix("shop").await?;
/// let app = Catga::builder()
///     .layer(RedisInbox::new(&stores).ttl(Duration::from_secs(3 * 24 * 3600)))
///     .build()?;
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisInbox {
    conn: StoreConn,
    keys: Arc<OutboxKeys>,
    ttl_ms: u64,
}

impl std::fmt::Debug for RedisInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisInbox")
            .field("stream", &self.keys.stream)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RedisInbox {
    /// An inbox under the prefix of `stores`, on their connection. No I/O until used.
    pub fn new(stores: &RedisStores) -> RedisInbox {
        let conn = stores.conn.clone();
        let keys = Arc::new(OutboxKeys::new(conn.tag("outbox")));
        RedisInbox {
            conn,
            keys,
            ttl_ms: millis(DEFAULT_TTL),
        }
    }

    /// How long a record is kept (default 7 days; at least 1 ms, at most 100 years).
    pub fn ttl(mut self, ttl: Duration) -> RedisInbox {
        self.ttl_ms = millis(ttl);
        self
    }

    /// The record of a handled message: its reply (JSON; `null` for an event), or `None`.
    async fn seen(&self, key: &str) -> Result<Option<Vec<u8>>, RedisOutboxError> {
        let mut get = redis::cmd("GET");
        get.arg(key);
        self.conn
            .run("inbox: look up", key, &get)
            .await
            .map_err(RedisOutboxError::Store)
    }
}

impl Behavior for RedisInbox {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        // A request sent to another service is recorded there, around its handler.
        if info.kind() == MessageKind::Query || next.goes_remote() {
            return next.run(msg).await;
        }
        let handler = msg.handler();
        let key = self
            .keys
            .inbox(handler.unwrap_or(info.name()), ctx.message_id());
        if let Some(reply) = self
            .seen(&key)
            .await
            .map_err(|e| dispatch_error(info.name(), handler, e))?
        {
            tracing::debug!(target: "catga::redis", message = info.name(), key = %key,
                "inbox: a duplicate is acknowledged without running its handler");
            metrics::counter!("catga_inbox_duplicates_total", "message" => info.name())
                .increment(1);
            return replay::<P>(info, &reply);
        }
        let ttl_ms = self.ttl_ms;
        let dispatch = Dispatch {
            info,
            handler,
            message_id: ctx.message_id(),
        };
        let (output, outcome) =
            within::<P, _, _>(&self.conn, &self.keys, dispatch, |writes| async move {
                let output = next.run(msg).await?;
                let reply = P::encode_output(info, &output).map_err(|source| {
                    Error::from(ErrorKind::Codec {
                        message: info.name().to_string(),
                        source,
                    })
                })?;
                writes
                    .with_unit(|unit| {
                        unit.inbox = Some(InboxRecord { key, reply, ttl_ms });
                    })
                    .map_err(|e| dispatch_error(info.name(), handler, e))?;
                Ok(output)
            })
            .await?;
        match outcome {
            Some(Outcome::Duplicate(reply)) => {
                tracing::debug!(target: "catga::redis", message = info.name(),
                    "inbox: a concurrent duplicate was applied first; this one's writes were not");
                metrics::counter!("catga_inbox_duplicates_total", "message" => info.name())
                    .increment(1);
                replay::<P>(info, &reply)
            }
            _ => Ok(output),
        }
    }
}
