//! The mediator: one object that sends requests and publishes events.
//!
//! [`Catga`] is built once with [`Catga::builder`] and cloned freely (clones share everything).
//! [`Catga::send`] dispatches a command or query to its one handler and returns the reply;
//! [`Catga::publish`] dispatches an event to all its handlers concurrently and reports every
//! failure. Both run the message through the behaviour stack. Events a handler queued with
//! [`Context::publish`] are published after it succeeds, before `send`/`publish` returns.

mod builder;
mod bytes;
mod follow_up;
pub(crate) mod guard;
mod terminal;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;

pub use builder::{CatgaBuilder, DEFAULT_BATCH_CONCURRENCY, DEFAULT_MAX_PAYLOAD_BYTES};
pub(crate) use follow_up::absorb;

use crate::context::{Context, Scoped};
use crate::error::{Error, HandlerFailure};
use crate::inline::InlineSlot;
use crate::message::{Event, Request};
use crate::payload::EventRef;
use crate::pipeline::{Identity, Layer};
use crate::registry::{EventHandlerBox, Table};
use guard::guarded;
use terminal::{EventTerminal, RequestTerminal};

/// The application: handlers, state and behaviours, ready to dispatch. See the
/// [module docs](self).
pub struct Catga<L = Identity> {
    inner: Arc<Inner<L>>,
}

struct Inner<L> {
    layers: L,
    table: Table,
    max_payload_bytes: usize,
    batch_concurrency: usize,
}

impl<L> Clone for Catga<L> {
    fn clone(&self) -> Self {
        Catga {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L> std::fmt::Debug for Catga<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catga")
            .field("layers", &std::any::type_name::<L>())
            .field("max_payload_bytes", &self.inner.max_payload_bytes)
            .finish_non_exhaustive()
    }
}

impl Catga {
    /// Starts building an application with no state and no behaviours.
    pub fn builder() -> CatgaBuilder<Identity> {
        CatgaBuilder::new()
    }
}

impl<L: Layer> Catga<L> {
    /// Sends a command or query to its handler and returns the handler's reply.
    ///
    /// # Errors
    /// [`Error::NoHandler`] if no handler is registered (only possible for messages allowed
    /// with `allow_unhandled`), the handler's own error as [`Error::Handler`], or whatever a
    /// behaviour decides ([`Error::Validation`], [`Error::Timeout`], …).
    #[inline]
    pub fn send<M: Request>(&self, msg: M) -> impl Future<Output = Result<M::Output, Error>> + '_ {
        self.send_with(msg, Context::new())
    }

    /// [`send`](Self::send) with a context the caller prepared (deadline, correlation id,
    /// headers, cancellation).
    pub async fn send_with<M: Request>(&self, msg: M, ctx: Context) -> Result<M::Output, Error> {
        let Some(entry) = self.inner.table.request::<M>() else {
            return Err(Error::NoHandler { message: M::NAME });
        };
        let slot = pin!(InlineSlot::new());
        let terminal = RequestTerminal {
            entry,
            ctx: &ctx,
            slot: slot.as_ref(),
        };
        let run = self.inner.layers.run(msg, &ctx, &terminal);
        let output = if ctx.is_guarded() {
            guard::watch(&ctx, M::NAME, run).await
        } else {
            run.await
        }?;
        if ctx.pending().len() > 0 {
            self.publish_follow_ups(&ctx).await?;
        }
        Ok(output)
    }

    /// Sends many requests of one type, at most `batch_concurrency` at a time (see the
    /// builder), and returns each result in input order.
    pub async fn send_batch<M, I>(&self, msgs: I) -> Vec<Result<M::Output, Error>>
    where
        M: Request,
        I: IntoIterator<Item = M>,
    {
        futures::stream::iter(msgs)
            .map(|msg| self.send(msg))
            .buffered(self.inner.batch_concurrency)
            .collect()
            .await
    }

    /// Publishes an event to all its handlers, which run concurrently. An event with no
    /// handlers is not an error.
    ///
    /// # Errors
    /// [`Error::Publish`] listing every handler that failed (handlers that succeeded are not
    /// undone, and the events they queued are still published).
    #[inline]
    pub fn publish<E: Event>(&self, event: E) -> impl Future<Output = Result<(), Error>> + '_ {
        self.publish_with(event, Context::new())
    }

    /// [`publish`](Self::publish) with a context the caller prepared.
    pub async fn publish_with<E: Event>(&self, event: E, ctx: Context) -> Result<(), Error> {
        let Some(entry) = self.inner.table.event::<E>() else {
            return Ok(());
        };
        let handlers = entry.handlers();
        let run = guarded(
            &ctx,
            E::NAME,
            self.run_event_handlers(handlers, &event, &ctx),
        );
        let mut failures = match run.await {
            Ok(failures) => failures,
            Err(stopped) => return Err(stopped),
        };
        if ctx.pending().len() > 0
            && let Err(error) = self.publish_follow_ups(&ctx).await
        {
            follow_up::absorb(&mut failures, error);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Publish {
                event: E::NAME,
                failures,
            })
        }
    }

    /// Runs every handler of one event concurrently; returns the failures. Up to four handlers
    /// are joined in place without allocating.
    async fn run_event_handlers<E: Event>(
        &self,
        handlers: &[EventHandlerBox<E>],
        event: &E,
        ctx: &Context,
    ) -> Result<Vec<HandlerFailure>, Error> {
        let one = |index: usize| {
            let handler = &handlers[index];
            let scope = u32::try_from(index + 1).unwrap_or(u32::MAX);
            async move {
                let slot = pin!(InlineSlot::new());
                let terminal = EventTerminal {
                    handler,
                    event,
                    ctx,
                    scope,
                    slot: slot.as_ref(),
                };
                let result = Scoped::new(
                    scope,
                    self.inner.layers.run(EventRef(event), ctx, &terminal),
                )
                .await;
                result.map_err(|error| HandlerFailure {
                    handler: handler.0.name,
                    error,
                })
            }
        };
        let mut failures = Vec::new();
        let mut note = |r: Result<(), HandlerFailure>| {
            if let Err(f) = r {
                failures.push(f);
            }
        };
        match handlers.len() {
            0 => {}
            1 => note(one(0).await),
            2 => {
                let (a, b) = futures::join!(one(0), one(1));
                note(a);
                note(b);
            }
            3 => {
                let (a, b, c) = futures::join!(one(0), one(1), one(2));
                note(a);
                note(b);
                note(c);
            }
            4 => {
                let (a, b, c, d) = futures::join!(one(0), one(1), one(2), one(3));
                note(a);
                note(b);
                note(c);
                note(d);
            }
            n => {
                for r in futures::future::join_all((0..n).map(one)).await {
                    note(r);
                }
            }
        }
        Ok(failures)
    }
}
