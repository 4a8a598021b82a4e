//! A caller's deadline bounds the caller, not an event's subscribers.
//!
//! An event is a fact: once published, every handler of it should run to its end, whether or
//! not whoever published it is still waiting. So when a caller's deadline (or cancellation)
//! ends its wait for in-process event handlers (a `publish_with` with a deadline, or the
//! events a request's handler queued with `ctx.publish`), the caller gets its answer on time
//! and the handlers go on in a background task instead of being dropped half-way. Their
//! failures go where failed events go (the `DeadLetter` layer, logs, metrics).

use std::future::pending;
use std::pin::pin;

use futures::future::{BoxFuture, Either, select};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ErrorKind};

/// How a bounded wait ended.
pub(crate) enum Waited<T> {
    /// The work finished in time.
    Done(T),
    /// The deadline passed; the work goes on in the background.
    TimedOut,
    /// The caller cancelled; the work goes on in the background.
    Cancelled,
}

/// Waits for `work` until `deadline` or `cancel`, then leaves it running in a task of its
/// own, which hands its output to `report` (or, outside a Tokio runtime, where nothing can
/// run it in the background, waits for it after all).
pub(crate) async fn wait_or_detach<T: Send + 'static>(
    what: &'static str,
    deadline: Option<Instant>,
    cancel: Option<CancellationToken>,
    work: BoxFuture<'static, T>,
    report: fn(T),
) -> Waited<T> {
    if deadline.is_none() && cancel.is_none() {
        return Waited::Done(work.await);
    }
    let expire = pin!(async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => pending::<()>().await,
        }
    });
    let cancelled = pin!(async {
        match &cancel {
            Some(token) => token.cancelled().await,
            None => pending::<()>().await,
        }
    });
    // `select` polls the work first: work that finishes as the deadline passes wins.
    let (rest, waited) = match select(work, select(expire, cancelled)).await {
        Either::Left((done, _)) => return Waited::Done(done),
        Either::Right((Either::Left(_), rest)) => (rest, Waited::TimedOut),
        Either::Right((Either::Right(_), rest)) => (rest, Waited::Cancelled),
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            tracing::debug!(target: "catga", what,
                "the caller stopped waiting; the event handlers go on in the background");
            drop(runtime.spawn(async move { report(rest.await) }));
            waited
        }
        Err(_) => Waited::Done(rest.await),
    }
}

/// The caller's error for a wait that ended before the work did.
pub(crate) fn caller_error<T>(
    message: &'static str,
    deadline: Option<Instant>,
    started: Instant,
    waited: Waited<Result<T, Error>>,
) -> Result<T, Error> {
    match waited {
        Waited::Done(result) => result,
        Waited::TimedOut => Err(ErrorKind::Timeout {
            message,
            after: deadline.map(|at| at.saturating_duration_since(started)),
        }
        .into()),
        Waited::Cancelled => Err(ErrorKind::Cancelled { message }.into()),
    }
}
