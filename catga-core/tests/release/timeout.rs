//! `Timeout`: the context's deadline, tightened for the layers inside it, is given back
//! however the inner dispatch ends; a layer outside (a retry, a hedge) would otherwise take
//! the dropped attempt's limit for its own.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::behavior::Timeout;
use catga_core::prelude::*;
use catga_core::{CancellationToken, ErrorKind};
use futures::FutureExt;
use tokio::time::Instant;

use crate::common::{Act, ENDINGS, Ending, HELD, Job, code};

/// Runs the rest of the pipeline, ends it as `ending` says, then notes the context's
/// deadline as this layer (outside `Timeout`) sees it.
struct Watch {
    ending: Ending,
    cancel: CancellationToken,
    seen: Arc<Mutex<Vec<Option<Instant>>>>,
}

impl Behavior for Watch {
    async fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> Result<P::Output, Error> {
        let message = msg.info().name();
        let cut: Error = ErrorKind::Cancelled { message }.into();
        let result = match self.ending {
            Ending::Drop => tokio::select! {
                result = next.run(msg) => result,
                () = tokio::time::sleep(HELD) => Err(cut),
            },
            Ending::Cancel => tokio::select! {
                result = next.run(msg) => result,
                () = self.cancel.cancelled() => Err(cut),
            },
            // The `Timeout` layer inside ends it.
            Ending::Deadline => next.run(msg).await,
            Ending::Panic => AssertUnwindSafe(next.run(msg))
                .catch_unwind()
                .await
                .unwrap_or(Err(cut)),
        };
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(ctx.deadline());
        result
    }
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_given_back_however_the_inner_dispatch_ends() {
    for caller_deadline in [None, Some(Duration::from_secs(60))] {
        for ending in ENDINGS {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let cancel = CancellationToken::new();
            let app = Catga::builder()
                .layer(Watch {
                    ending,
                    cancel: cancel.clone(),
                    seen: seen.clone(),
                })
                .layer(Timeout::new(HELD * 3))
                .build()
                .unwrap();
            let canceller = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(HELD).await;
                canceller.cancel();
            });
            let ctx = match caller_deadline {
                Some(limit) => Context::new().with_timeout(limit),
                None => Context::new(),
            };
            let expected = ctx.deadline();
            let act = if ending == Ending::Panic {
                Act::Panic
            } else {
                Act::Hang
            };
            let key = format!("timeout-{ending:?}-{caller_deadline:?}");
            let ended = app.send_with(Job { key, act }, ctx).await;
            let expected_code = if ending == Ending::Deadline {
                "timeout"
            } else {
                "cancelled"
            };
            assert_eq!(code(&ended), expected_code, "{ending:?}");
            let seen = seen.lock().unwrap().clone();
            assert_eq!(
                seen,
                [expected],
                "{ending:?}, caller deadline {caller_deadline:?}: the caller's deadline is back"
            );
        }
    }
}
