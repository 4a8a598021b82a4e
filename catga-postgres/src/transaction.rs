//! Running a dispatch in a transaction: the one the dispatch already has, or a new one.

use std::sync::Arc;

use catga_core::error::{Error, ErrorKind};
use sqlx::PgPool;

use crate::error::PostgresError;
use crate::tx::Tx;

/// A failure of the database as the dispatch's error: retryable ([`ErrorKind::Store`]).
pub(crate) fn store_error(error: PostgresError) -> Error {
    let operation = match &error {
        PostgresError::Database { operation, .. } => *operation,
        _ => "postgres",
    };
    ErrorKind::Store {
        operation,
        source: error.boxed(),
    }
    .into()
}

/// Runs `work` in the current dispatch's transaction if it has one (an outer `Outbox` or
/// `Inbox` opened it and commits it), else in a new transaction that is committed when `work`
/// succeeds and rolled back when it fails. `work` runs with the transaction as [`Tx::current`].
///
/// Returns whether this call committed a transaction of its own, beside `work`'s value.
pub(crate) async fn within<T, F, Fut>(pool: &PgPool, work: F) -> Result<(T, bool), Error>
where
    F: FnOnce(Arc<Tx>) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    if let Ok(tx) = Tx::current() {
        return Ok((work(tx).await?, false));
    }
    let transaction = pool
        .begin()
        .await
        .map_err(|e| store_error(PostgresError::db("begin")(e)))?;
    let tx = Tx::new(transaction);
    let outcome = Tx::scope(Arc::clone(&tx), work(Arc::clone(&tx))).await;
    let Some(transaction) = tx.finish().await else {
        return Err(store_error(PostgresError::TransactionEnded));
    };
    match outcome {
        Ok(value) => {
            transaction
                .commit()
                .await
                .map_err(|e| store_error(PostgresError::db("commit")(e)))?;
            Ok((value, true))
        }
        Err(error) => {
            // Explicitly, so the connection is clean when it returns to the pool.
            if let Err(e) = transaction.rollback().await {
                tracing::warn!(target: "catga", error = %e, "rollback failed; the connection is discarded");
            }
            Err(error)
        }
    }
}
