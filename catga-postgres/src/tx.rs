//! The dispatch's transaction, as a handler reaches it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

use crate::error::PostgresError;

tokio::task_local! {
    /// The transaction of the dispatch being polled. A task-local, scoped to the future of
    /// one handler's pipeline, rather than a value in the `Context`: the handlers of one event
    /// share a context but each has a transaction of its own.
    static CURRENT: Arc<Tx>;
}

/// The transaction the [`Outbox`](crate::Outbox) behaviour opened for the current dispatch.
/// Write the handler's rows through it: they commit together with the events the handler
/// publishes, or not at all.
///
/// ```no_run
/// use catga_core::prelude::*;
/// use catga_postgres::Tx;
///
/// #[command(output = ())]
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// pub struct PlaceOrder { pub id: i64 }
///
/// #[event]
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// pub struct OrderPlaced { pub id: i64 }
///
/// #[handler]
/// async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<(), catga_core::error::BoxError> {
///     let tx = Tx::current()?;
///     let mut conn = tx.lock().await?;
///     sqlx::query("INSERT INTO orders (id) VALUES ($1)").bind(cmd.id).execute(&mut *conn).await?;
///     ctx.publish(OrderPlaced { id: cmd.id })?;
///     Ok(())
/// }
/// ```
pub struct Tx {
    /// `None` once the behaviour took it back to commit or roll back.
    transaction: Mutex<Option<Transaction<'static, Postgres>>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    /// The current dispatch's transaction.
    ///
    /// # Errors
    /// [`PostgresError::NoTransaction`] outside a dispatch an `Outbox` (commands) or `Inbox`
    /// (commands and event handlers) runs: no such layer, a query, or a task the handler
    /// spawned.
    pub fn current() -> Result<Arc<Tx>, PostgresError> {
        CURRENT
            .try_with(Arc::clone)
            .map_err(|_| PostgresError::NoTransaction)
    }

    /// Locks the transaction for a query: the guard is a `&mut PgConnection` for sqlx
    /// (`.execute(&mut *guard)`). Queries of one dispatch run one at a time.
    ///
    /// The lock is not re-entrant: drop the guard before calling anything that uses the
    /// transaction itself (`PostgresEventStore`, so a `Repository` on it). Keep the guard in a
    /// block of its own, as the example above does. (The event store does not wait for a
    /// guard: it fails with [`PostgresError::TransactionBusy`] instead of hanging.)
    ///
    /// # Errors
    /// [`PostgresError::TransactionEnded`] if the dispatch already committed or rolled back
    /// (the handle was kept past the handler's return).
    pub async fn lock(&self) -> Result<TxGuard<'_>, PostgresError> {
        MutexGuard::try_map(self.transaction.lock().await, Option::as_mut)
            .map(TxGuard)
            .map_err(|_| PostgresError::TransactionEnded)
    }

    /// Locks the transaction if no guard holds it: for catga's own code called from a
    /// handler, which would otherwise wait forever on a guard the handler still holds.
    pub(crate) fn try_lock(&self) -> Result<TxGuard<'_>, PostgresError> {
        let guard = self
            .transaction
            .try_lock()
            .map_err(|_| PostgresError::TransactionBusy)?;
        MutexGuard::try_map(guard, Option::as_mut)
            .map(TxGuard)
            .map_err(|_| PostgresError::TransactionEnded)
    }

    pub(crate) fn new(transaction: Transaction<'static, Postgres>) -> Arc<Tx> {
        Arc::new(Tx {
            transaction: Mutex::new(Some(transaction)),
        })
    }

    /// Runs `future` with `tx` as the current transaction.
    pub(crate) async fn scope<F: Future>(tx: Arc<Tx>, future: F) -> F::Output {
        CURRENT.scope(tx, future).await
    }

    /// Takes the transaction back to commit or roll it back; later `lock`s fail.
    pub(crate) async fn finish(&self) -> Option<Transaction<'static, Postgres>> {
        self.transaction.lock().await.take()
    }
}

/// A locked transaction: dereferences to the connection sqlx executes queries on.
pub struct TxGuard<'a>(MappedMutexGuard<'a, Transaction<'static, Postgres>>);

impl std::fmt::Debug for TxGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxGuard").finish_non_exhaustive()
    }
}

impl Deref for TxGuard<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl DerefMut for TxGuard<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}
