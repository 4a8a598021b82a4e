//! The inbox: a redelivered message is handled once in effect.
//!
//! Brokers deliver at least once, and so does an outbox relay that died mid-batch. [`Inbox`]
//! records `(message id, handler)` in the transaction of the handler's own writes (the one an
//! [`Outbox`](crate::Outbox) opened, or one of its own): the record commits with the effects
//! or not at all. A message whose record exists is acknowledged without running the handler
//! again, whichever instance it reaches and after any restart; a command's or query's reply
//! is kept with the record and returned again.

use std::sync::Arc;

use catga_core::error::Error;
use catga_core::{Behavior, Context, Next, Payload};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::PostgresError;
use crate::schema::{Schema, sql};
use crate::transaction::{store_error, within};

/// The inbox behaviour: records each handled message in the transaction of its effects,
/// so a redelivered copy is acknowledged without running the handler again.
///
/// Every dispatch of a command or an event handler through it costs one `INSERT` in its
/// transaction (a query changes nothing and is passed through). A message seen before costs
/// one `SELECT`, outside any transaction, and the handler does not run. A duplicate that
/// arrives while the first is still being handled waits for the first to commit (Postgres's
/// unique-key wait) and is then skipped, or runs if the first rolled back.
///
/// Place it outside [`Outbox`](crate::Outbox) or inside: both join one transaction. Records
/// are kept until [`purge_older_than`](Self::purge_older_than) removes them; keep them longer
/// than a message can be redelivered (the broker's retention, the outbox's backlog).
#[derive(Clone)]
pub struct Inbox {
    pool: PgPool,
    seen: Arc<str>,
    claim: Arc<str>,
    reply: Arc<str>,
    purge: Arc<str>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// What the inbox knows of a message for a handler.
enum Record {
    /// Not seen: this dispatch now holds the record (in its transaction).
    Claimed,
    /// Handled before; the stored reply, if the message has one.
    Done(Option<Vec<u8>>),
}

impl Inbox {
    /// An inbox in `schema` (created by [`migrate`](crate::migrate)), on `pool`.
    pub fn new(pool: PgPool, schema: &Schema) -> Inbox {
        let table = schema.table("inbox");
        Inbox {
            pool,
            seen: format!("SELECT reply FROM {table} WHERE message_id = $1 AND handler = $2")
                .into(),
            // The subquery reads the snapshot from before the insert: it sees a record only
            // if one was committed before this statement began.
            claim: format!(
                "WITH ins AS (INSERT INTO {table} (message_id, handler) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM ins) AS claimed"
            )
            .into(),
            reply: format!("UPDATE {table} SET reply = $3 WHERE message_id = $1 AND handler = $2")
                .into(),
            purge: format!(
                "DELETE FROM {table} WHERE processed_at < now() - make_interval(secs => $1)"
            )
            .into(),
        }
    }

    /// Deletes the records of messages handled more than `age` ago; returns how many.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the delete fails.
    pub async fn purge_older_than(&self, age: std::time::Duration) -> Result<u64, PostgresError> {
        let done = sqlx::query(sql(&self.purge))
            .bind(age.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("inbox: purge"))?;
        Ok(done.rows_affected())
    }

    /// The record outside any transaction: the cheap answer for the common redelivery.
    async fn seen(
        &self,
        id: Uuid,
        handler: &str,
    ) -> Result<Option<Option<Vec<u8>>>, PostgresError> {
        let row = sqlx::query(sql(&self.seen))
            .bind(id)
            .bind(handler)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("inbox: look up"))?;
        row.map(|row| row.try_get::<Option<Vec<u8>>, _>("reply"))
            .transpose()
            .map_err(PostgresError::db("inbox: read record"))
    }

    async fn claim(
        &self,
        tx: &crate::Tx,
        id: Uuid,
        handler: &str,
    ) -> Result<Record, PostgresError> {
        let claimed: bool = {
            let mut conn = tx.lock().await?;
            sqlx::query_scalar(sql(&self.claim))
                .bind(id)
                .bind(handler)
                .fetch_one(&mut *conn)
                .await
                .map_err(PostgresError::db("inbox: record"))?
        };
        if claimed {
            return Ok(Record::Claimed);
        }
        // A concurrent first delivery committed while this insert waited: read its reply
        // with a fresh snapshot.
        let mut conn = tx.lock().await?;
        let reply: Option<Option<Vec<u8>>> = sqlx::query_scalar(sql(&self.seen))
            .bind(id)
            .bind(handler)
            .fetch_optional(&mut *conn)
            .await
            .map_err(PostgresError::db("inbox: look up"))?;
        Ok(Record::Done(reply.flatten()))
    }
}

/// Returns the reply a duplicate gets: the stored one, decoded.
fn replay<P: Payload>(
    info: &'static catga_core::message::MessageInfo,
    reply: Option<Vec<u8>>,
) -> Result<P::Output, Error> {
    let bytes = reply.unwrap_or_else(|| b"null".to_vec());
    P::decode_output(info, &bytes).map_err(|source| {
        catga_core::error::ErrorKind::Codec {
            message: info.name().to_string(),
            source,
        }
        .into()
    })
}

impl Behavior for Inbox {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let info = msg.info();
        // A request sent to another service is recorded there, around its handler: a claim
        // here (a row locked until the reply came) would keep that side's claim waiting.
        if info.kind() == catga_core::message::MessageKind::Query || next.goes_remote() {
            return next.run(msg).await;
        }
        let id = ctx.message_id();
        let handler = msg.handler().unwrap_or(info.name());
        if let Some(reply) = self.seen(id, handler).await.map_err(store_error)? {
            metrics::counter!("catga_inbox_duplicates_total", "message" => info.name())
                .increment(1);
            return replay::<P>(info, reply);
        }
        let (output, _) = within(&self.pool, |tx| async move {
            match self.claim(&tx, id, handler).await.map_err(store_error)? {
                Record::Done(reply) => {
                    metrics::counter!("catga_inbox_duplicates_total", "message" => info.name())
                        .increment(1);
                    replay::<P>(info, reply)
                }
                Record::Claimed => {
                    let output = next.run(msg).await?;
                    if info.kind().is_request() {
                        let reply = P::encode_output(info, &output).map_err(|source| {
                            Error::from(catga_core::error::ErrorKind::Codec {
                                message: info.name().to_string(),
                                source,
                            })
                        })?;
                        let mut conn = tx.lock().await.map_err(store_error)?;
                        sqlx::query(sql(&self.reply))
                            .bind(id)
                            .bind(handler)
                            .bind(reply)
                            .execute(&mut *conn)
                            .await
                            .map_err(|e| store_error(PostgresError::db("inbox: keep reply")(e)))?;
                    }
                    Ok(output)
                }
            }
        })
        .await?;
        Ok(output)
    }
}
