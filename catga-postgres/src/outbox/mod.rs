//! The transactional outbox: a handler's writes and the events it publishes commit together.
//!
//! [`Outbox`] is a behaviour. Around each command it begins a transaction, makes it the
//! dispatch's [`Tx`], runs the handler, and when the handler succeeded writes the events the
//! handler published ([`Context::take_published`]) into `<schema>.outbox` in that same
//! transaction and commits. A handler that fails leaves nothing: its rows and its events roll
//! back together. The [`OutboxRelay`] then publishes the committed rows and removes them once
//! the transport acknowledged them. A started relay also reports the backlog, as the gauges
//! [`OUTBOX_PENDING`] and [`OUTBOX_OLDEST_AGE`].

mod backlog;
mod relay;
mod round;
pub(crate) mod row;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::Error;
use catga_core::{Behavior, Context, Next, Payload};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::error::PostgresError;
use crate::schema::Schema;
use crate::transaction::{store_error, within};
use crate::tx::Tx;

pub use backlog::{OUTBOX_OLDEST_AGE, OUTBOX_PENDING};
pub use relay::{OutboxRelay, RunningRelay};
use round::Committed;

/// What the behaviour and the relay of one outbox share.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) schema: Schema,
    /// Woken at every commit that wrote rows: the relay of this process starts at once.
    pub(crate) committed: Notify,
    /// The rows each commit wrote, with their envelopes, for the fast round.
    pub(crate) fast_tx: mpsc::Sender<Vec<Committed>>,
    /// Taken by the first relay started in this process.
    pub(crate) fast_rx: std::sync::Mutex<Option<mpsc::Receiver<Vec<Committed>>>>,
    /// Whether a relay took `fast_rx`: until then nothing is queued (it would only be held).
    pub(crate) fast_taken: std::sync::atomic::AtomicBool,
    /// Whether the "no relay started here" warning was logged.
    pub(crate) warned_no_relay: std::sync::atomic::AtomicBool,
    /// The `NOTIFY` payload of this process's commits that are not handed over from memory
    /// (an outer transaction commits them, or no relay ran when the dispatch began): every
    /// relay may claim them, and this process's relay claims them even when it does not lead.
    pub(crate) instance: Arc<str>,
}

/// The `NOTIFY` payload of rows the committing process's relay publishes from memory: other
/// relays leave them to it (a process that dies before publishing them leaves them to the
/// relays' poll). Rows announced with any other payload (the committing outbox's
/// [`Shared::instance`]) are claimed by whichever relay hears.
pub(crate) const FAST: &str = "fast";

/// Commits handed to the relay and not yet taken. Beyond it a commit's rows are left to a
/// claim round (nothing is lost; they are read back from the table).
const FAST_QUEUE: usize = 1024;

/// Which events must be published in order: those with equal keys, in commit order.
pub type OrderingKey = fn(&Envelope) -> String;

/// The default [`OrderingKey`]: the conversation (correlation id), so everything one request
/// set in motion is published in the order it was committed.
pub fn by_correlation(envelope: &Envelope) -> String {
    envelope.correlation_id.to_string()
}

/// The transactional outbox behaviour. See the [module docs](self).
///
/// It wraps commands. A query changes nothing and is passed through. The handlers of one
/// event share a context, so their published events cannot be told apart here: an event
/// handler gets a transaction from [`Inbox`](crate::Inbox) (its writes and its inbox record
/// commit together), and its follow-up events are published after that commit, as without an
/// outbox.
///
/// Add it inside `Retry` (each attempt gets a transaction of its own) and outside
/// `Validation` and `Timeout`:
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_core::behavior::Retry;
/// use catga_postgres::{Outbox, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let outbox = Outbox::new(pool, &schema);
/// let relay = outbox.relay();
/// let app = Catga::builder().layer(Retry::exponential(3)).layer(outbox).build()?;
/// let running = relay.start(app.clone()).await?;
/// # running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    insert: Arc<str>,
    format: WireFormat,
    ordering_key: OrderingKey,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("schema", &self.shared.schema)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// An outbox in `schema` (created by [`migrate`](crate::migrate)), on `pool`.
    pub fn new(pool: PgPool, schema: &Schema) -> Outbox {
        let schema = schema.clone();
        let table = schema.table("outbox");
        let channel = schema.outbox_channel();
        // One round trip for all of a dispatch's events: the rows, and the notification that
        // wakes relays in other processes (delivered when the transaction commits).
        let insert = format!(
            "WITH ins AS (INSERT INTO {table} (message_id, ordering_key, name, kind, correlation_id, \
               causation_id, timestamp_ms, traceparent, tracestate, headers, format, payload) \
             SELECT mid, okey, name, kind, corr, caus, ts, tp, tst, hdr::jsonb, fmt, pay \
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::uuid[], \
               $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[]) \
               AS t(mid, okey, name, kind, corr, caus, ts, tp, tst, hdr, fmt, pay) \
             RETURNING position, message_id), \
             woken AS (SELECT pg_notify('{channel}', $13)) \
             SELECT ins.position, ins.message_id FROM ins, woken"
        );
        let (fast_tx, fast_rx) = mpsc::channel(FAST_QUEUE);
        Outbox {
            shared: Arc::new(Shared {
                pool,
                schema,
                committed: Notify::new(),
                fast_tx,
                fast_rx: std::sync::Mutex::new(Some(fast_rx)),
                fast_taken: std::sync::atomic::AtomicBool::new(false),
                warned_no_relay: std::sync::atomic::AtomicBool::new(false),
                instance: Uuid::now_v7().simple().to_string().into(),
            }),
            insert: insert.into(),
            format: WireFormat::Json,
            ordering_key: by_correlation,
        }
    }

    /// The format events are stored and published in (JSON by default).
    pub fn format(mut self, format: WireFormat) -> Outbox {
        self.format = format;
        self
    }

    /// How events are grouped for ordering (default [`by_correlation`]): the relay publishes
    /// events with the same key in commit order, and events with different keys in parallel
    /// batches across relays.
    pub fn ordering_key(mut self, key: OrderingKey) -> Outbox {
        self.ordering_key = key;
        self
    }

    /// The relay that publishes this outbox's rows; start it once the application is built.
    pub fn relay(&self) -> OutboxRelay {
        OutboxRelay::new(Arc::clone(&self.shared))
    }

    /// Writes `envelopes` in `tx`; returns them as the rows they became, for the fast round.
    /// `fast`: this process's relay will be handed the rows after the commit.
    async fn write(
        &self,
        tx: &Tx,
        envelopes: Vec<Envelope>,
        fast: bool,
    ) -> Result<Vec<Committed>, PostgresError> {
        let mut columns = row::Columns::default();
        let mut keys = Vec::with_capacity(envelopes.len());
        for envelope in &envelopes {
            let key = (self.ordering_key)(envelope);
            columns.push(envelope, key.clone());
            keys.push(key);
        }
        let rows: Vec<(i64, uuid::Uuid)> = {
            let mut conn = tx.lock().await?;
            sqlx::query_as(crate::schema::sql(&self.insert))
                .bind(columns.message_id)
                .bind(columns.ordering_key)
                .bind(columns.name)
                .bind(columns.kind)
                .bind(columns.correlation_id)
                .bind(columns.causation_id)
                .bind(columns.timestamp_ms)
                .bind(columns.traceparent)
                .bind(columns.tracestate)
                .bind(columns.headers)
                .bind(columns.format)
                .bind(columns.payload)
                .bind(if fast { FAST } else { &*self.shared.instance })
                .fetch_all(&mut *conn)
                .await
                .map_err(PostgresError::db("outbox: insert"))?
        };
        // `RETURNING` promises no order: match the rows to the envelopes by message id.
        let positions: std::collections::HashMap<uuid::Uuid, i64> = rows
            .into_iter()
            .map(|(position, id)| (id, position))
            .collect();
        Ok(envelopes
            .into_iter()
            .zip(keys)
            .filter_map(|(envelope, ordering_key)| {
                positions.get(&envelope.id).map(|&position| Committed {
                    position,
                    ordering_key,
                    envelope,
                })
            })
            .collect())
    }
}

impl Behavior for Outbox {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        // A command sent to another service commits there, with its handler's writes: a
        // transaction here would only be held open across the round trip.
        if msg.info().kind() != catga_core::message::MessageKind::Command || next.goes_remote() {
            return next.run(msg).await;
        }
        let format = self.format;
        // Handed to this process's relay after the commit only when this dispatch commits
        // (no outer `Inbox` owns the transaction) and a relay runs here.
        let fast = Tx::current().is_err() && self.shared.fast_taken.load(Ordering::Acquire);
        let ((output, committed), own) = within(&self.shared.pool, |tx| async move {
            let output = next.run(msg).await?;
            let envelopes = ctx.take_published(format)?;
            let committed = if envelopes.is_empty() {
                Vec::new()
            } else {
                self.write(&tx, envelopes, fast)
                    .await
                    .map_err(store_error)?
            };
            Ok((output, committed))
        })
        .await?;
        if !committed.is_empty() {
            metrics::counter!("catga_outbox_written_total").increment(committed.len() as u64);
            if !self.shared.fast_taken.load(Ordering::Acquire)
                && !self.shared.warned_no_relay.swap(true, Ordering::Relaxed)
            {
                // Once per outbox: the likely mistake is a relay never started. Another
                // instance's relay may publish the rows, so it is not an error.
                tracing::warn!(target: "catga", schema = %self.shared.schema,
                    "events are stored in the outbox but no OutboxRelay was started in this process; they wait until a relay (here or in another instance) publishes them: start one with `outbox.relay().start(app)`");
            }
            if fast && own && self.shared.fast_tx.try_send(committed).is_err() {
                // The queue is full or the relay stopped: other relays were told to leave
                // these rows to it, so wake this process's claim round instead.
                self.shared.committed.notify_one();
            } else if !fast && own && self.shared.fast_taken.load(Ordering::Acquire) {
                // A relay started here while this dispatch ran: its claim round takes the
                // rows (the commit's NOTIFY may have come before it listened).
                self.shared.committed.notify_one();
            }
            // Otherwise the commit's NOTIFY (here, or of the outer `Inbox`'s commit) names
            // this process: its relay claims the rows, and so may any other.
        }
        Ok(output)
    }
}
