//! The idempotency store on Postgres: which messages were handled, and their replies, shared
//! by every instance of the application.
//!
//! One row per key in `<schema>.idempotency`: while a dispatch holds the key, `reply` is NULL
//! and `expires_at` is the end of its lease; once completed, `reply` holds the reply and
//! `expires_at` the end of its TTL. A row past `expires_at` counts as absent, so a claimant that
//! died frees the key when its lease ends and a reply is forgotten after its TTL. Times are the
//! database's (`now()`), so instances need not agree on the time.
//!
//! Every operation is one statement, and one round trip: a claim is an
//! `INSERT … ON CONFLICT … DO UPDATE … WHERE expires_at <= now()` that also reads the row it
//! did not take; a completion or release changes the row and sends a `NOTIFY` that is
//! delivered when it commits. A dispatch waiting for a key held elsewhere listens for that
//! notification (one `LISTEN` connection per store, shared by its waiters), so a completion in
//! any instance wakes it at once; it also looks again every [poll
//! interval](PostgresIdempotencyStore::poll_interval), in case a notification was lost.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::idempotency::{Claim, IdempotencyStore, KeyId, ReplyKey};
use sqlx::{PgPool, Row};
use tokio::time::Instant;

use super::column::{self, DEFAULT_MAX_WRITE_BYTES, LONGEST};
use super::wakeup::Wakeups;
use crate::error::PostgresError;
use crate::fnv::Fnv;
use crate::schema::{Schema, sql};

/// How often a waiter looks at its key unless configured.
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// The shortest poll interval accepted.
const MIN_POLL: Duration = Duration::from_millis(10);

/// An [`IdempotencyStore`] in the table `<schema>.idempotency` (created by
/// [`migrate`](crate::migrate)), shared by every instance on the same schema. See the
/// [module docs](self) for how it works.
///
/// Cheap to clone: clones share the statements and the `LISTEN` connection. The connection is
/// taken from `pool` when the first [`wait`](IdempotencyStore::wait) starts and kept until
/// every clone is dropped.
///
/// Keys, replies and timing:
/// * A key is its message name, handler name (none for a command or query) and id; a message
///   id and a declared key with the same text are different keys. Declared keys may be any
///   text without NUL characters.
/// * Leases and TTLs are kept to the microsecond, by the database's clock; durations over 100
///   years are taken as 100 years.
/// * A reply may be up to [`max_write_bytes`](Self::max_write_bytes) (64 MiB by default).
/// * Completed and expired rows stay until [`purge_expired`](Self::purge_expired) deletes the
///   expired ones (they are ignored meanwhile); run it now and then.
/// * The trait names no owner: as in the in-memory store, a release removes whatever claim
///   holds the key, and a completion overwrites it, even one a later claimant took after this
///   dispatch's lease ran out. Choose leases longer than handlers run.
///
/// Its operations use the pool, never the dispatch's transaction ([`Tx`](crate::Tx)): a claim
/// must be seen by other instances before the handler's transaction commits, and a release
/// must survive that transaction's rollback.
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use catga_core::Catga;
/// use catga_core::behavior::Idempotency;
/// use catga_postgres::{PostgresIdempotencyStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let store = PostgresIdempotencyStore::new(pool, &schema);
/// let app = Catga::builder().layer(Idempotency::new(store)).build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresIdempotencyStore {
    pool: PgPool,
    sql: Arc<Statements>,
    wakeups: Arc<Wakeups>,
    poll: Duration,
    max_write_bytes: usize,
}

impl std::fmt::Debug for PostgresIdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresIdempotencyStore")
            .field("wakeups", &self.wakeups)
            .field("poll", &self.poll)
            .field("max_write_bytes", &self.max_write_bytes)
            .finish_non_exhaustive()
    }
}

/// The store's SQL, with the schema spliced in once.
struct Statements {
    claim: Arc<str>,
    complete: Arc<str>,
    release: Arc<str>,
    pending: Arc<str>,
    purge: Arc<str>,
}

/// A key as the table's columns: `$1` message, `$2` handler, `$3` declared, `$4` id.
struct Columns<'a> {
    message: &'a str,
    handler: &'a str,
    declared: bool,
    id: Cow<'a, str>,
}

impl<'a> Columns<'a> {
    fn of(key: &'a ReplyKey) -> Result<Columns<'a>, PostgresError> {
        let (declared, id) = match &key.id {
            KeyId::MessageId(id) => (false, Cow::Owned(id.to_string())),
            KeyId::Declared(text) => {
                column::text("a declared idempotency key", text)?;
                (true, Cow::Borrowed(text.as_str()))
            }
        };
        column::text("a message name", key.message)?;
        let handler = key.handler.unwrap_or("");
        column::text("a handler name", handler)?;
        Ok(Columns {
            message: key.message,
            handler,
            declared,
            id,
        })
    }

    /// Binds the key as `$1`..`$4`.
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(self.message)
            .bind(self.handler)
            .bind(self.declared)
            .bind(&*self.id)
    }

    /// The notification payload of this key: a hash, short whatever the key's length (a
    /// payload is limited to 8000 bytes). Every instance computes the same one.
    fn token(&self) -> String {
        let mut hash = Fnv::default();
        hash.write(self.message.as_bytes());
        // 0xff never occurs in UTF-8: the parts cannot run into each other.
        hash.write(&[0xff]);
        hash.write(self.handler.as_bytes());
        hash.write(&[0xff, u8::from(self.declared), 0xff]);
        hash.write(self.id.as_bytes());
        format!("{:016x}", hash.0)
    }
}

/// The channel of `schema`'s idempotency notifications (see [`Schema::channel`]).
fn channel(schema: &Schema) -> String {
    schema.channel("idempotency")
}

impl PostgresIdempotencyStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresIdempotencyStore {
        let t = schema.table("idempotency");
        let key = "message = $1 AND handler = $2 AND declared = $3 AND id = $4";
        let sql = Statements {
            // Takes the key if it is absent or expired; otherwise reads it as it was when the
            // statement began. A row that was expired in that snapshot, or absent from it, yet
            // not taken was changed by a concurrent claim (see `claim`). A claim of a new key
            // is a plain insert; one of a held or completed key also locks its row for the
            // statement (as `DO UPDATE … WHERE` does), which duplicates can afford.
            claim: format!(
                "WITH claimed AS (\
                   INSERT INTO {t} AS t (message, handler, declared, id, reply, expires_at) \
                   VALUES ($1, $2, $3, $4, NULL, now() + $5::interval) \
                   ON CONFLICT (message, handler, declared, id) DO UPDATE \
                     SET reply = NULL, expires_at = EXCLUDED.expires_at \
                     WHERE t.expires_at <= now() \
                   RETURNING 1) \
                 SELECT true AS claimed, NULL::bytea AS reply, true AS live FROM claimed \
                 UNION ALL \
                 SELECT false, reply, expires_at > now() FROM {t} \
                 WHERE {key} AND NOT EXISTS (SELECT 1 FROM claimed)"
            )
            .into(),
            // Overwrites whatever is there, as the in-memory store does: the dispatch that
            // completes has the reply, whoever holds the key now.
            complete: format!(
                "WITH done AS (\
                   INSERT INTO {t} AS t (message, handler, declared, id, reply, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, now() + $6::interval) \
                   ON CONFLICT (message, handler, declared, id) DO UPDATE \
                     SET reply = EXCLUDED.reply, expires_at = EXCLUDED.expires_at \
                   RETURNING 1) \
                 SELECT pg_notify($7, $8) FROM done"
            )
            .into(),
            // Only a claim: a recorded reply is never erased by a release.
            release: format!(
                "WITH released AS (\
                   DELETE FROM {t} WHERE {key} AND reply IS NULL RETURNING 1) \
                 SELECT pg_notify($5, $6) FROM released"
            )
            .into(),
            pending: format!(
                "SELECT (extract(epoch FROM expires_at - now()) * 1000000)::int8 FROM {t} \
                 WHERE {key} AND reply IS NULL AND expires_at > now()"
            )
            .into(),
            purge: format!("DELETE FROM {t} WHERE expires_at <= now()").into(),
        };
        PostgresIdempotencyStore {
            wakeups: Arc::new(Wakeups::new(pool.clone(), channel(schema))),
            pool,
            sql: Arc::new(sql),
            poll: DEFAULT_POLL,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
        }
    }

    /// How often a waiting dispatch looks at its key besides being notified (default 1 s): it
    /// bounds how late a waiter learns of a completion whose notification was lost (the
    /// `LISTEN` connection dropped at that moment).
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for less than 10 ms.
    pub fn poll_interval(mut self, every: Duration) -> Result<Self, PostgresError> {
        if every < MIN_POLL {
            return Err(PostgresError::InvalidOption {
                option: "poll_interval",
                reason: format!("{every:?} is shorter than {MIN_POLL:?}"),
            });
        }
        self.poll = every;
        Ok(self)
    }

    /// The largest reply [`complete`](IdempotencyStore::complete) stores, in bytes (default
    /// 64 MiB, at most [`MAX_WRITE_BYTES`](crate::store::MAX_WRITE_BYTES)); a larger one is
    /// refused with [`PostgresError::TooLarge`].
    ///
    /// # Errors
    /// [`PostgresError::InvalidOption`] for 0 or more than `MAX_WRITE_BYTES`.
    pub fn max_write_bytes(mut self, bytes: usize) -> Result<Self, PostgresError> {
        self.max_write_bytes = column::write_limit(bytes)?;
        Ok(self)
    }

    /// Deletes the rows whose lease or TTL has run out (they already count as absent) and
    /// returns how many. One statement; run it now and then, e.g. hourly.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the query failed.
    pub async fn purge_expired(&self) -> Result<u64, PostgresError> {
        let done = sqlx::query(sql(&self.sql.purge))
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("idempotency store: purge"))?;
        Ok(done.rows_affected())
    }

    async fn claim_key(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, PostgresError> {
        let columns = Columns::of(key)?;
        // A claim that neither took the key nor found it live lost a race with a concurrent
        // claim or release that committed after this statement's snapshot was taken. The next
        // statement sees that commit; should it race again, `InProgress` is a safe answer:
        // the caller waits, which returns at once if the key is not held, and claims again.
        for _ in 0..2 {
            let row = columns
                .bind(sqlx::query(sql(&self.sql.claim)))
                .bind(column::interval(lease))
                .fetch_optional(&self.pool)
                .await
                .map_err(PostgresError::db("idempotency store: claim"))?;
            let Some(row) = row else { continue };
            let read = |row: &sqlx::postgres::PgRow| -> Result<_, sqlx::Error> {
                Ok((
                    row.try_get::<bool, _>(0)?,
                    row.try_get::<Option<Vec<u8>>, _>(1)?,
                    row.try_get::<bool, _>(2)?,
                ))
            };
            let (claimed, reply, live) =
                read(&row).map_err(PostgresError::db("idempotency store: read claim"))?;
            match (claimed, reply, live) {
                (true, _, _) => return Ok(Claim::Claimed),
                (false, Some(reply), true) => return Ok(Claim::Completed(Arc::from(reply))),
                (false, None, true) => return Ok(Claim::InProgress),
                (false, _, false) => continue,
            }
        }
        Ok(Claim::InProgress)
    }

    async fn complete_key(
        &self,
        key: &ReplyKey,
        reply: &[u8],
        ttl: Duration,
    ) -> Result<(), PostgresError> {
        column::fits("an idempotent reply", reply.len(), self.max_write_bytes)?;
        let columns = Columns::of(key)?;
        columns
            .bind(sqlx::query(sql(&self.sql.complete)))
            .bind(reply)
            .bind(column::interval(ttl))
            .bind(self.wakeups.channel())
            .bind(columns.token())
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("idempotency store: complete"))?;
        Ok(())
    }

    async fn release_key(&self, key: &ReplyKey) -> Result<(), PostgresError> {
        let columns = Columns::of(key)?;
        columns
            .bind(sqlx::query(sql(&self.sql.release)))
            .bind(self.wakeups.channel())
            .bind(columns.token())
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("idempotency store: release"))?;
        Ok(())
    }

    /// How long the key is still held, or `None` if it is not (absent, completed, or its lease
    /// ran out).
    async fn held_for(&self, columns: &Columns<'_>) -> Result<Option<Duration>, PostgresError> {
        let micros: Option<i64> = sqlx::query_scalar(sql(&self.sql.pending))
            .bind(columns.message)
            .bind(columns.handler)
            .bind(columns.declared)
            .bind(&*columns.id)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("idempotency store: look at a held key"))?;
        Ok(micros.map(|m| Duration::from_micros(m.unsigned_abs())))
    }

    async fn wait_for(&self, key: &ReplyKey, timeout: Duration) -> Result<(), PostgresError> {
        let columns = Columns::of(key)?;
        let deadline = Instant::now() + timeout.min(LONGEST);
        // Subscribed before looking, so a completion between the look and the wait is heard.
        let (subscription, not_listening) = self.wakeups.subscribe(columns.token()).await;
        if let Some(error) = not_listening {
            tracing::warn!(target: "catga", error = %error, key = %key,
                "idempotency store: cannot listen for completions; the wait polls");
        }
        let notified = subscription.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        loop {
            let Some(held_for) = self.held_for(&columns).await? else {
                return Ok(());
            };
            let now = Instant::now();
            let lease_end = now + held_for;
            tokio::select! {
                () = &mut notified => return Ok(()),
                () = tokio::time::sleep_until(deadline.min(lease_end)) => return Ok(()),
                () = tokio::time::sleep_until(now + self.poll) => {}
            }
        }
    }
}

impl IdempotencyStore for PostgresIdempotencyStore {
    /// One round trip (two when it races a concurrent change of the same key).
    async fn claim(&self, key: &ReplyKey, lease: Duration) -> Result<Claim, BoxError> {
        Ok(self.claim_key(key, lease).await?)
    }

    /// One round trip; wakes the key's waiters in every instance when it commits.
    async fn complete(&self, key: &ReplyKey, reply: &[u8], ttl: Duration) -> Result<(), BoxError> {
        Ok(self.complete_key(key, reply, ttl).await?)
    }

    /// One round trip; wakes the key's waiters in every instance if a claim was released.
    async fn release(&self, key: &ReplyKey) -> Result<(), BoxError> {
        Ok(self.release_key(key).await?)
    }

    /// Always `false`: giving up a claim takes a round trip, which a destructor cannot await.
    /// The [`Idempotency`](catga_core::behavior::Idempotency) behaviour then spawns
    /// [`release`](IdempotencyStore::release), as the trait documents.
    fn release_now(&self, _key: &ReplyKey) -> bool {
        false
    }

    /// Returns when the key is completed or released in any instance (notified), when its
    /// lease runs out, or at `timeout`. One round trip to look at the key, one more per poll
    /// interval spent waiting.
    async fn wait(&self, key: &ReplyKey, timeout: Duration) -> Result<(), BoxError> {
        Ok(self.wait_for(key, timeout).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_tell_message_ids_from_declared_keys() {
        let id = uuid::Uuid::nil();
        let by_id = ReplyKey {
            message: "orders.place",
            handler: None,
            id: KeyId::MessageId(id),
        };
        let declared = ReplyKey {
            id: KeyId::Declared(id.to_string()),
            ..by_id.clone()
        };
        let token = |key: &ReplyKey| Columns::of(key).map(|c| c.token()).ok();
        assert_eq!(token(&by_id), token(&by_id.clone()));
        assert_ne!(token(&by_id), token(&declared));
        // Fixed (checked against an independent FNV-1a): every process and version must
        // compute the same payload.
        assert_eq!(token(&by_id).as_deref(), Some("57403fa53fb9ce2a"));
    }

    #[test]
    fn channels_fit_postgres_names() {
        let long = Schema::new("a".repeat(63)).unwrap_or_else(|e| panic!("{e}"));
        assert!(channel(&long).len() <= crate::schema::MAX_IDENTIFIER);
        assert_eq!(channel(&Schema::catga()), "catga_idempotency");
    }
}
