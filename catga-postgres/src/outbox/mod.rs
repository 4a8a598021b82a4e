//! The transactional outbox: a handler's writes and the events it publishes commit together.
//!
//! [`Outbox`] is a behaviour. Around each command it begins a transaction, makes it the
//! dispatch's [`Tx`], runs the handler, and when the handler succeeded writes the events the
//! handler published ([`Context::take_published`]) into `<schema>.outbox` in that same
//! transaction and commits. A handler that fails leaves nothing: its rows and its events roll
//! back together. The [`OutboxRelay`] then publishes the committed rows and removes them once
//! the transport acknowledged them.

mod relay;
pub(crate) mod row;

use std::sync::Arc;

use catga_core::codec::WireFormat;
use catga_core::envelope::Envelope;
use catga_core::error::{Error, ErrorKind};
use catga_core::{Behavior, Context, Next, Payload};
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::error::PostgresError;
use crate::schema::Schema;
use crate::tx::Tx;

pub use relay::{OutboxRelay, RunningRelay};

/// What the behaviour and the relay of one outbox share.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) schema: Schema,
    /// Woken at every commit that wrote rows: the relay of this process starts at once.
    pub(crate) committed: Notify,
}

/// Which events must be published in order: those with equal keys, in commit order.
pub type OrderingKey = fn(&Envelope) -> String;

/// The default [`OrderingKey`]: the conversation (correlation id), so everything one request
/// set in motion is published in the order it was committed.
pub fn by_correlation(envelope: &Envelope) -> String {
    envelope.correlation_id.to_string()
}

/// The transactional outbox behaviour. See the [module docs](self).
///
/// It wraps commands only: a query changes nothing, and the handlers of one event share a
/// context, so their events cannot yet be told apart here; an event handler's writes and
/// follow-ups are not transactional with each other (use a command for that).
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
/// let outbox = Outbox::new(pool, schema);
/// let relay = outbox.relay();
/// let app = Catga::builder().layer(Retry::default()).layer(outbox).build()?;
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
    pub fn new(pool: PgPool, schema: Schema) -> Outbox {
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
             RETURNING position), \
             woken AS (SELECT pg_notify('{channel}', '')) \
             SELECT count(*) FROM ins, woken"
        );
        Outbox {
            shared: Arc::new(Shared {
                pool,
                schema,
                committed: Notify::new(),
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

    async fn write(&self, tx: &Tx, envelopes: &[Envelope]) -> Result<(), PostgresError> {
        let mut columns = row::Columns::default();
        for envelope in envelopes {
            columns.push(envelope, (self.ordering_key)(envelope));
        }
        let mut conn = tx.lock().await?;
        sqlx::query(crate::schema::sql(&self.insert))
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
            .execute(&mut *conn)
            .await
            .map_err(PostgresError::db("outbox: insert"))?;
        Ok(())
    }
}

fn store_error(error: PostgresError) -> Error {
    let operation = match &error {
        PostgresError::Database { operation, .. } => *operation,
        _ => "outbox",
    };
    ErrorKind::Store {
        operation,
        source: error.boxed(),
    }
    .into()
}

impl Behavior for Outbox {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        if msg.info().kind() != catga_core::message::MessageKind::Command {
            return next.run(msg).await;
        }
        let transaction = self
            .shared
            .pool
            .begin()
            .await
            .map_err(|e| store_error(PostgresError::db("outbox: begin")(e)))?;
        let tx = Tx::new(transaction);
        let outcome = Tx::scope(Arc::clone(&tx), next.run(msg)).await;
        let Some(transaction) = tx.finish().await else {
            return Err(store_error(PostgresError::TransactionEnded));
        };
        let output = match outcome {
            Ok(output) => output,
            Err(error) => {
                // Explicitly, so the connection is clean before it returns to the pool.
                if let Err(e) = transaction.rollback().await {
                    tracing::warn!(target: "catga", error = %e, "outbox: rollback failed; the connection is discarded");
                }
                return Err(error);
            }
        };
        let envelopes = match ctx.take_published(self.format) {
            Ok(envelopes) => envelopes,
            Err(error) => {
                let _ = transaction.rollback().await;
                return Err(error);
            }
        };
        let tx = Tx::new(transaction);
        if !envelopes.is_empty()
            && let Err(error) = self.write(&tx, &envelopes).await
        {
            if let Some(transaction) = tx.finish().await {
                let _ = transaction.rollback().await;
            }
            return Err(store_error(error));
        }
        let Some(transaction) = tx.finish().await else {
            return Err(store_error(PostgresError::TransactionEnded));
        };
        transaction
            .commit()
            .await
            .map_err(|e| store_error(PostgresError::db("outbox: commit")(e)))?;
        if !envelopes.is_empty() {
            self.shared.committed.notify_one();
            metrics::counter!("catga_outbox_written_total").increment(envelopes.len() as u64);
        }
        Ok(output)
    }
}
