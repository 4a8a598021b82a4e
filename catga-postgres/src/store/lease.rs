//! The lease store on Postgres: leases with fencing tokens in `<schema>.leases`, granted by the
//! database to whichever instance asks first, so singleton work runs on one instance of the
//! application at a time.
//!
//! **Table.** One row per lease name (created by [`migrate`](crate::migrate)):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `name` | `text COLLATE "C"`, primary key | the lease's name |
//! | `holder` | `text` | who holds it (or held it last, if it ran out); NULL once released |
//! | `token` | `bigint NOT NULL`, > 0 | the fencing token of the last grant |
//! | `expires_at` | `timestamptz` | the end of the grant; NULL once released |
//!
//! A lease is held while `holder` is set and `expires_at` is in the future. The row stays after a
//! release or an expiry, so the next grant takes `token + 1`: tokens only grow, across releases,
//! expiries and restarts of the server. A grant of a name never granted before gets token 1.
//!
//! **Round trips.** Every operation is one statement, so one round trip (a statement's first use
//! on a connection takes one more, to prepare it; sqlx keeps it prepared for the connection's
//! later uses):
//!
//! * acquire: `INSERT … ON CONFLICT (name) DO UPDATE SET … token = token + 1 … WHERE` the lease
//!   is released or ran out `RETURNING token`; no row returned means the lease is held. The
//!   upsert locks the row, and a statement that waited for the lock checks the row again as the
//!   locker left it, so of concurrent acquirers exactly one is granted the lease.
//! * renew: `UPDATE … SET expires_at … WHERE name, token` match and the grant still runs.
//! * release: the same `UPDATE`, setting `holder` and `expires_at` to NULL.
//! * observe: one `SELECT` of the holder, the token and the time left, in microseconds.
//!
//! **Clock.** Expiry is judged by the database's clock alone, so instances need not agree on the
//! time. The statements use `now()`, the start of the statement's transaction, which for the
//! store's statements (each one on its own, never inside a transaction) is the start of the
//! statement: whether a grant ran out and when the new one ends are computed from one instant.
//! (`clock_timestamp()`, read anew at every call, would judge the check and set the new expiry
//! at different instants.) A statement that waited for a row lock is judged at the instant it
//! began, which errs the safe way for an acquirer: it may find a lease still held that ran out
//! while it waited, never the other way round. A renewal that began before its grant ran out
//! and waited for the lock succeeds, as it would have without the wait, its new TTL counted
//! from that instant; had another acquirer been granted the lease meanwhile, the token no
//! longer matches and the renewal fails. The holder counts its TTL from before it asked, on its
//! own clock, so it stops believing it holds the lease no later than the database lets it go.

use std::sync::Arc;
use std::time::Duration;

use catga_core::error::BoxError;
use catga_core::store::lease::{FencingToken, Grant, LeaseState, LeaseStore};
use sqlx::{PgPool, Row};

use super::column::{self, LONGEST};
use crate::error::PostgresError;
use crate::schema::{Schema, sql};

const TABLE: &str = "leases";

/// A [`LeaseStore`] in the table `<schema>.leases` (created by [`migrate`](crate::migrate)),
/// shared by every instance on the same schema. See the [module docs](self) for the table, the
/// statements and the clock.
///
/// * Every operation is one round trip; [`acquire`](LeaseStore::acquire) grants the lease to
///   exactly one of concurrent acquirers, in any number of processes.
/// * TTLs are kept to the microsecond, by the database's clock; a TTL over 100 years is taken as
///   100 years (and the [`Grant`] says so).
/// * Names and holders may be any text without NUL characters: acquiring a lease with a NUL in
///   its name or holder is refused with [`PostgresError::Unrepresentable`] before anything is
///   sent; such a lease is observed [`Vacant`](LeaseState::Vacant), and a grant naming one is
///   lost (renew and release return `false`), without a round trip.
/// * The table refuses rows the store never writes: a token below 1, a holder without an
///   expiry or the other way round, an infinite expiry. Should its constraints be dropped, a
///   token below 1 the store reads (or would grant, one more than it) is a
///   [`PostgresError::MalformedRow`], a row missing its holder or its expiry counts as vacant
///   for every operation, and observing an infinite expiry fails with
///   [`PostgresError::Database`]. Tokens only grow as long as nobody rewrites the table by hand;
///   a grant after token `i64::MAX` fails with [`PostgresError::Database`] (`bigint out of
///   range`) and changes nothing.
///
/// Its operations use the pool, never the dispatch's transaction ([`Tx`](crate::Tx)): a grant
/// must be seen by other instances at once, whatever becomes of any transaction. Cheap to
/// clone; does no I/O until used.
///
/// Leader election on it, with [`Leadership`](catga_core::cluster::Leadership):
///
/// ```no_run
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use catga_core::cluster::Leadership;
/// use catga_postgres::{PostgresLeaseStore, Schema, migrate};
///
/// let schema = Schema::new("orders")?;
/// migrate(&pool, &schema).await?;
/// let store = PostgresLeaseStore::new(pool, &schema);
/// let election = Leadership::new(store, "scheduler")
///     .ttl(Duration::from_secs(5))
///     .start();
/// let mut leading = election.subscribe();
/// while leading.changed().await.is_ok() {
///     let leader = leading.borrow_and_update().clone();
///     if let Some(leader) = leader {
///         // Fire scheduled messages, passing `leader.token()` to every fenced write, until
///         // `leader.lost()` resolves.
///         leader.lost().await;
///     }
/// }
/// election.stop().await; // releases the lease if held: another instance leads at once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresLeaseStore {
    pool: PgPool,
    sql: Arc<Statements>,
}

impl std::fmt::Debug for PostgresLeaseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLeaseStore").finish_non_exhaustive()
    }
}

/// The store's SQL, with the schema spliced in once.
struct Statements {
    acquire: Arc<str>,
    renew: Arc<str>,
    release: Arc<str>,
    observe: Arc<str>,
}

/// A grant as the table's key: its name, and its token as a `bigint`; `None` for a grant this
/// store cannot have made (a NUL in its name, a token beyond `i64::MAX`), which is lost.
fn key_of(grant: &Grant) -> Option<(&str, i64)> {
    column::text("a lease name", &grant.name).ok()?;
    Some((&grant.name, column::bigint(grant.token.get())?))
}

impl PostgresLeaseStore {
    /// A store in `schema` (created by [`migrate`](crate::migrate)), on `pool`. Does no I/O.
    pub fn new(pool: PgPool, schema: &Schema) -> PostgresLeaseStore {
        let t = schema.table(TABLE);
        // The grant `$1` (name), `$2` (token), if it still runs.
        let running =
            "name = $1 AND token = $2 AND holder IS NOT NULL AND expires_at > now()".to_string();
        let sql = Statements {
            // A row lock decides: a concurrent acquirer waits for it, then checks the row as the
            // winner left it (held) and takes nothing. The condition is exactly "no grant
            // runs", as renew, release and observe read it (with the table's constraints, a
            // holder and an expiry are set together, so `expires_at` alone would do).
            acquire: format!(
                "INSERT INTO {t} AS t (name, holder, token, expires_at) \
                 VALUES ($1, $2, 1, now() + $3::interval) \
                 ON CONFLICT (name) DO UPDATE \
                   SET holder = EXCLUDED.holder, token = t.token + 1, \
                       expires_at = EXCLUDED.expires_at \
                   WHERE t.holder IS NULL OR t.expires_at IS NULL OR t.expires_at <= now() \
                 RETURNING token"
            )
            .into(),
            renew: format!("UPDATE {t} SET expires_at = now() + $3::interval WHERE {running}")
                .into(),
            release: format!("UPDATE {t} SET holder = NULL, expires_at = NULL WHERE {running}")
                .into(),
            observe: format!(
                "SELECT holder, token, \
                   (extract(epoch FROM expires_at - now()) * 1000000)::int8 AS remaining_us \
                 FROM {t} WHERE name = $1 AND holder IS NOT NULL AND expires_at > now()"
            )
            .into(),
        };
        PostgresLeaseStore {
            pool,
            sql: Arc::new(sql),
        }
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, PostgresError> {
        column::text("a lease name", name)?;
        column::text("a lease holder", holder)?;
        let ttl = ttl.min(LONGEST);
        let token: Option<i64> = sqlx::query_scalar(sql(&self.sql.acquire))
            .bind(name)
            .bind(holder)
            .bind(column::interval(ttl))
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("lease store: acquire"))?;
        let Some(token) = token else {
            return Ok(None);
        };
        Ok(Some(Grant {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: token_of(token)?,
            ttl,
        }))
    }

    async fn renew_lease(&self, grant: &Grant, ttl: Duration) -> Result<bool, PostgresError> {
        let Some((name, token)) = key_of(grant) else {
            return Ok(false);
        };
        let done = sqlx::query(sql(&self.sql.renew))
            .bind(name)
            .bind(token)
            .bind(column::interval(ttl))
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("lease store: renew"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, grant: &Grant) -> Result<bool, PostgresError> {
        let Some((name, token)) = key_of(grant) else {
            return Ok(false);
        };
        let done = sqlx::query(sql(&self.sql.release))
            .bind(name)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(PostgresError::db("lease store: release"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn observe_lease(&self, name: &str) -> Result<LeaseState, PostgresError> {
        if column::text("a lease name", name).is_err() {
            return Ok(LeaseState::Vacant);
        }
        let row = sqlx::query(sql(&self.sql.observe))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(PostgresError::db("lease store: observe"))?;
        let Some(row) = row else {
            return Ok(LeaseState::Vacant);
        };
        let read = || -> Result<_, sqlx::Error> {
            Ok((
                row.try_get::<String, _>("holder")?,
                row.try_get::<i64, _>("token")?,
                row.try_get::<i64, _>("remaining_us")?,
            ))
        };
        let (holder, token, remaining) =
            read().map_err(PostgresError::db("lease store: read a lease"))?;
        Ok(LeaseState::Held {
            holder,
            token: token_of(token)?,
            // Positive: the row is selected only while `expires_at` is in the future.
            remaining: Duration::from_micros(remaining.max(0).unsigned_abs()),
        })
    }
}

/// A `token` column as a fencing token: at least 1, as the store writes it.
///
/// # Errors
/// [`PostgresError::MalformedRow`] for one below 1.
fn token_of(token: i64) -> Result<FencingToken, PostgresError> {
    match column::unsigned(TABLE, token)? {
        0 => Err(PostgresError::MalformedRow {
            table: TABLE,
            reason: "fencing token 0 (tokens start at 1)".to_string(),
        }),
        token => Ok(FencingToken::new(token)),
    }
}

impl LeaseStore for PostgresLeaseStore {
    /// One round trip. Of concurrent acquirers of a lease that is not held, in any number of
    /// processes, exactly one is granted it.
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Grant>, BoxError> {
        Ok(self.acquire_lease(name, holder, ttl).await?)
    }

    /// One round trip, or none for a grant this store cannot have made (`false`).
    async fn renew(&self, grant: &Grant, ttl: Duration) -> Result<bool, BoxError> {
        Ok(self.renew_lease(grant, ttl).await?)
    }

    /// One round trip, or none for a grant this store cannot have made (`false`).
    async fn release(&self, grant: &Grant) -> Result<bool, BoxError> {
        Ok(self.release_lease(grant).await?)
    }

    /// One round trip, or none for a name with a NUL character (vacant).
    async fn observe(&self, name: &str) -> Result<LeaseState, BoxError> {
        Ok(self.observe_lease(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_below_one_are_malformed_and_grants_this_store_cannot_make_are_lost() {
        assert!(matches!(
            token_of(0),
            Err(PostgresError::MalformedRow { .. })
        ));
        assert!(matches!(
            token_of(-3),
            Err(PostgresError::MalformedRow { .. })
        ));
        assert_eq!(token_of(7).ok(), Some(FencingToken::new(7)));
        let grant = |name: &str, token: u64| Grant {
            name: name.to_owned(),
            holder: "node-a".to_owned(),
            token: FencingToken::new(token),
            ttl: Duration::from_secs(1),
        };
        assert_eq!(key_of(&grant("jobs", 7)), Some(("jobs", 7)));
        assert_eq!(key_of(&grant("jo\0bs", 7)), None);
        assert_eq!(key_of(&grant("jobs", u64::MAX)), None);
    }
}
