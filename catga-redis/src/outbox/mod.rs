//! The transactional outbox on Redis: a handler's writes and the events it publishes are
//! applied together, by one Lua script, or not at all.
//!
//! A unit of work ([`RedisWrites`]) is opened around each handler by the outer of
//! [`RedisOutbox`] and [`RedisInbox`](crate::RedisInbox); the handler queues its writes there
//! and publishes events with `ctx.publish` as usual. When the handler succeeded, the commit
//! script (one `EVALSHA`, one round trip) checks the inbox record, applies the writes, adds
//! each event to the outbox stream `{P:outbox}:stream` and its id to its ordering key's list,
//! writes the inbox record and announces the commit on `{P:outbox}:notify`. A handler that
//! fails leaves nothing. The [`RedisOutboxRelay`] then publishes the entries through the
//! application's transport and removes each once the transport took it. A started relay also
//! reports the backlog, as the gauges [`OUTBOX_PENDING`] and [`OUTBOX_OLDEST_AGE`].
//!
//! Redis runs a script atomically (no other client's command runs in between) but does not
//! roll back what a script wrote before one of its commands failed; see [`RedisWrites`] for
//! how the commit script still applies a unit whole or not at all. How durable a commit is
//! depends on the server's persistence (`appendonly yes`, `appendfsync`).
//! `docs/persistence.md` has the guarantees and the measured figures.

mod backlog;
mod commit;
mod error;
mod keys;
mod relay;
mod round;
mod writes;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::Error;
use catga_core::{Behavior, Context, Next, Payload};
use tokio::sync::{Notify, mpsc};

pub use backlog::{OUTBOX_OLDEST_AGE, OUTBOX_PENDING};
pub use error::RedisOutboxError;
pub(crate) use keys::OutboxKeys;
pub use relay::{RedisOutboxRelay, RunningRelay};
pub use writes::RedisWrites;

pub(crate) use commit::{Dispatch, Outcome, replay, within};
pub(crate) use error::dispatch_error;
pub(crate) use writes::{InboxRecord, millis};

use crate::store::{RedisStores, StoreConn};
use round::Committed;
use writes::Pending;

/// What the behaviour and the relay of one outbox share.
pub(crate) struct Shared {
    pub(crate) conn: StoreConn,
    pub(crate) keys: Arc<OutboxKeys>,
    /// Wakes this process's relay for a claim round: a fast hand-off that could not be made.
    pub(crate) committed: Notify,
    /// The entries each commit stored, with their envelopes, for the fast round.
    fast_tx: mpsc::Sender<Vec<Committed>>,
    /// Taken by the first relay started in this process.
    pub(crate) fast_rx: std::sync::Mutex<Option<mpsc::Receiver<Vec<Committed>>>>,
    /// Whether a relay took `fast_rx`: until then nothing is handed over.
    pub(crate) fast_taken: AtomicBool,
    warned_no_relay: AtomicBool,
}

/// Commits handed to the relay and not yet taken. Beyond it a commit's entries are left to a
/// claim round (nothing is lost; they are read back from the stream).
const FAST_QUEUE: usize = 1024;

impl Shared {
    /// A commit stored `committed`; `fast`: it told other relays this process's relay
    /// publishes them.
    pub(crate) fn committed_here(&self, fast: bool, committed: Vec<Committed>) {
        if !self.fast_taken.load(Ordering::Acquire) {
            if !self.warned_no_relay.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: "catga::redis", stream = %self.keys.stream,
                    "events are stored in the Redis outbox but no RedisOutboxRelay was started in this process; they wait until a relay (here or in another instance) publishes them: start one with `outbox.relay().start(app)`");
            }
            return;
        }
        if !fast || self.fast_tx.try_send(committed).is_err() {
            // Not handed over (a relay started here while the dispatch ran), the queue is
            // full or the relay stopped: this process's claim round takes the entries, leader
            // or not (other relays were told to leave fast entries to it).
            self.committed.notify_one();
        }
    }
}

/// Which events must be published in order: those with equal keys, in commit order.
pub type OrderingKey = fn(&Envelope) -> String;

/// The default [`OrderingKey`]: the conversation (correlation id), so everything one request
/// set in motion is published in the order it was committed.
pub fn by_correlation(envelope: &Envelope) -> String {
    envelope.correlation_id.to_string()
}

/// The transactional outbox behaviour on Redis. See the [module docs](self).
///
/// It wraps commands; a query changes nothing and passes through. An event handler gets a unit
/// of work from [`RedisInbox`](crate::RedisInbox) (its writes and its inbox record are applied
/// together), and its follow-up events are published after that, as without an outbox (the
/// handlers of one event share a context, so their events cannot be told apart here).
///
/// An [`Idempotency`](catga_core::behavior::Idempotency) behaviour outside it, on a store of
/// the same `RedisStores`, has its reply recorded by the commit
/// script, after the writes and events, instead of by a completion of its own.
///
/// Add it inside `Retry` (each attempt gets a unit of its own):
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_core::behavior::Retry;
/// use catga_redis::store::RedisStores;
/// use catga_redis::{RedisInbox, RedisOutbox};
///
/// let stores = RedisStores::connect("redis://127.0.0.1:6379").prefix("shop").await?;
/// let outbox = RedisOutbox::new(&stores);
/// let relay = outbox.relay();
/// let app = Catga::builder()
///     .layer(Retry::exponential(3))
///     .layer(RedisInbox::new(&stores))    // a redelivery has no second effect
///     .layer(outbox)                      // writes and events are applied together
///     .build()?;
/// let running = relay.start(app.clone()).await?;
/// # running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisOutbox {
    shared: Arc<Shared>,
    format: WireFormat,
    ordering_key: OrderingKey,
}

impl std::fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutbox")
            .field("stream", &self.shared.keys.stream)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl RedisOutbox {
    /// An outbox under the prefix of `stores`, on their connection. No I/O until used.
    pub fn new(stores: &RedisStores) -> RedisOutbox {
        let conn = stores.conn.clone();
        let keys = Arc::new(OutboxKeys::new(conn.tag("outbox")));
        let (fast_tx, fast_rx) = mpsc::channel(FAST_QUEUE);
        RedisOutbox {
            shared: Arc::new(Shared {
                conn,
                keys,
                committed: Notify::new(),
                fast_tx,
                fast_rx: std::sync::Mutex::new(Some(fast_rx)),
                fast_taken: AtomicBool::new(false),
                warned_no_relay: AtomicBool::new(false),
            }),
            format: WireFormat::Json,
            ordering_key: by_correlation,
        }
    }

    /// The format events are stored and published in (JSON by default).
    pub fn format(mut self, format: WireFormat) -> RedisOutbox {
        self.format = format;
        self
    }

    /// How events are grouped for ordering (default [`by_correlation`]): the relay publishes
    /// events with the same key in commit order, events with different keys in parallel.
    pub fn ordering_key(mut self, key: OrderingKey) -> RedisOutbox {
        self.ordering_key = key;
        self
    }

    /// The relay that publishes this outbox's entries; start it once the application is
    /// built.
    pub fn relay(&self) -> RedisOutboxRelay {
        RedisOutboxRelay::new(Arc::clone(&self.shared))
    }

    /// The outbox stream's key, `{P:outbox}:stream`: what the relay still has to publish.
    pub fn stream_key(&self) -> &str {
        &self.shared.keys.stream
    }

    /// A key of the handler's own in the outbox's Cluster slot, `{P:outbox}:<suffix>`, as
    /// [`RedisWrites::key`] builds it; for code outside a handler (a read model, a test).
    pub fn key(&self, suffix: &str) -> String {
        self.shared.keys.user(suffix)
    }
}

impl Behavior for RedisOutbox {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        // A command sent to another service commits there, with its handler's writes.
        if info.kind() != catga_core::message::MessageKind::Command || next.goes_remote() {
            return next.run(msg).await;
        }
        let (format, ordering_key) = (self.format, self.ordering_key);
        let shared = &self.shared;
        let dispatch = Dispatch {
            info,
            handler: msg.handler(),
            message_id: ctx.message_id(),
        };
        let (output, outcome) =
            within::<P, _, _>(&shared.conn, &shared.keys, dispatch, |writes| async move {
                let output = next.run(msg).await?;
                let envelopes = ctx.take_published(format)?;
                if !envelopes.is_empty() {
                    writes
                        .with_unit(|unit| {
                            for envelope in envelopes {
                                let ordering = keys::escape(&ordering_key(&envelope));
                                unit.events.push(Pending { envelope, ordering });
                            }
                            unit.relay = Some(Arc::clone(shared));
                        })
                        .map_err(|e| dispatch_error(info.name(), None, e))?;
                }
                Ok(output)
            })
            .await?;
        match outcome {
            Some(Outcome::Duplicate(reply)) => replay::<P>(info, &reply),
            _ => Ok(output),
        }
    }
}
