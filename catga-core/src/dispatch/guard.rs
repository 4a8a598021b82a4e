//! Enforces the context's deadline and cancellation signal around a dispatch.

use std::future::{Future, pending};
use std::pin::pin;

use futures::future::{Either, select};

use crate::context::Context;
use crate::error::Error;

/// Runs `work`, failing with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) at the context's deadline or
/// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) when its token fires. A context with neither costs one load.
#[inline]
pub(crate) async fn guarded<T, F>(ctx: &Context, message: &'static str, work: F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    if !ctx.is_guarded() {
        return work.await;
    }
    watch(ctx, message, work).await
}

/// The slow half of [`guarded`], for callers on the hot path that branch on
/// `ctx.is_guarded()` themselves (so the unguarded path adds no `async` layer).
pub(crate) async fn watch<T, F>(ctx: &Context, message: &'static str, work: F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let deadline = ctx.deadline();
    let started = tokio::time::Instant::now();
    let expire = pin!(async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => pending::<()>().await,
        }
    });
    let cancel = pin!(async {
        match ctx.cancellation() {
            Some(token) => token.cancelled().await,
            None => pending::<()>().await,
        }
    });
    // `select` polls `work` first, so a handler that finishes as the deadline passes wins.
    match select(pin!(work), select(expire, cancel)).await {
        Either::Left((result, _)) => result,
        Either::Right((Either::Left(_), _)) => Err(crate::ErrorKind::Timeout {
            message,
            after: deadline.map(|at| at.saturating_duration_since(started)),
        }
        .into()),
        Either::Right((Either::Right(_), _)) => Err(crate::ErrorKind::Cancelled { message }.into()),
    }
}
