//! One attempt of a handler: what a failed attempt discards of the events it queued.

use std::pin::Pin;
use std::task::Poll;

use crate::context::{Context, in_scope};
use crate::error::Error;

/// One attempt of a handler: if it fails, the events it queued with `ctx.publish` are
/// dropped, so a failed attempt never announces what it did not do and a retry starts
/// clean. A request's attempt drops what was queued after it started; an event handler's
/// attempt drops what its `scope` queued (its siblings in the publish share the context),
/// and is polled with that scope set so what it queues is tagged with it.
///
/// A hand-written future rather than an `async fn`: it sits on every dispatch, and a plain
/// struct has no state machine to enter and no drop glue to run. What is discarded is a
/// type (`D`), not a value, so a request handler's attempt does not compile the event
/// path's scoped poll.
///
/// Pinning is projected by hand (`handler` is the one structurally pinned field, and
/// `Attempt` has no `Drop`): `pin-project-lite`'s `project` is `#[inline]`, which a debug
/// build compiles once per handler into a unit shared by every handler, so touching one
/// handler recompiled them all.
pub(crate) struct Attempt<'c, F, D> {
    ctx: &'c Context,
    discard: D,
    handler: F,
}

/// What a failed attempt discards, and how its handler is polled.
pub(crate) trait Discard: Copy {
    fn poll<F: Future>(
        self,
        handler: Pin<&mut F>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<F::Output>;
    fn discard(self, ctx: &Context);
}

/// Everything queued after this many events (a request's attempt).
#[derive(Clone, Copy)]
pub(crate) struct After(usize);

/// Everything queued by this handler scope (an event handler's attempt).
#[derive(Clone, Copy)]
pub(crate) struct Scope(u32);

impl Discard for After {
    #[inline(always)]
    fn poll<F: Future>(
        self,
        handler: Pin<&mut F>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<F::Output> {
        handler.poll(cx)
    }
    fn discard(self, ctx: &Context) {
        if let Some(pending) = ctx.pending() {
            pending.truncate(self.0);
        }
    }
}

impl Discard for Scope {
    #[inline(always)]
    fn poll<F: Future>(
        self,
        handler: Pin<&mut F>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<F::Output> {
        in_scope(self.0, || handler.poll(cx))
    }
    fn discard(self, ctx: &Context) {
        if let Some(pending) = ctx.pending() {
            pending.discard_scope(self.0);
        }
    }
}

/// A request handler's attempt.
#[inline(always)]
pub(crate) fn attempt<F>(ctx: &Context, handler: F) -> Attempt<'_, F, After> {
    Attempt {
        ctx,
        discard: After(ctx.pending_len()),
        handler,
    }
}

/// An event handler's attempt, tagged with its scope in the publish.
#[inline(always)]
pub(crate) fn scoped_attempt<F>(ctx: &Context, scope: u32, handler: F) -> Attempt<'_, F, Scope> {
    Attempt {
        ctx,
        discard: Scope(scope),
        handler,
    }
}

impl<T, F, D> Future for Attempt<'_, F, D>
where
    F: Future<Output = Result<T, Error>>,
    D: Discard,
{
    type Output = Result<T, Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `handler` is structurally pinned: it is only reached through this pinned
        // projection, never moved, and `Attempt` has no `Drop` impl; the other fields are
        // `Copy` and never pinned. `Attempt` is `Unpin` exactly when `F` is (auto trait).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: the pinned projection of `handler`, as above.
        let handler = unsafe { Pin::new_unchecked(&mut this.handler) };
        let result = std::task::ready!(this.discard.poll(handler, cx));
        if result.is_err() {
            this.discard.discard(this.ctx);
        }
        Poll::Ready(result)
    }
}
