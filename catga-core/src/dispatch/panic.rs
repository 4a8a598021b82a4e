//! Containing a handler's panic to its one message.
//!
//! A message that arrives from a transport (and a follow-up event) runs on a consumer the
//! whole service shares: a panic that escaped would end that consumer's task, and with it
//! every later message, or leave a caller waiting for a reply that never comes. Such a
//! dispatch is polled inside `catch_unwind`, and a panic becomes [`ErrorKind::Panicked`],
//! answered and dead-lettered like any failure. A direct `send`/`publish` is an ordinary call
//! in the caller's task: a panic there propagates to the caller, as it would from any
//! function.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use crate::error::{Error, ErrorKind};

/// Longest panic message kept in the error (and the logs and dead letters it ends up in).
const MAX_DETAIL: usize = 1024;

/// The error for a panic of `handler` while handling `message`.
pub(crate) fn panicked(message: &str, handler: &str, payload: Box<dyn Any + Send>) -> Error {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_string());
    let mut end = detail.len().min(MAX_DETAIL);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    tracing::error!(target: "catga", message, handler, panic = &detail[..end],
        "a handler panicked; the panic was contained to this message");
    metrics::counter!("catga_handler_panics_total", "message" => message.to_string()).increment(1);
    ErrorKind::Panicked {
        message: message.to_string(),
        detail: detail[..end].to_string(),
    }
    .into()
}

/// Runs `work`, turning a panic into [`ErrorKind::Panicked`].
pub(crate) async fn contained<T>(
    message: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(panicked(message, "", payload)),
    }
}
