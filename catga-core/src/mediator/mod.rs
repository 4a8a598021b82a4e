//! The mediator: one object that sends requests and publishes events.
//!
//! [`Catga`] is built once with [`Catga::builder`] and cloned freely (clones share everything).
//! [`Catga::send`] dispatches a command or query to its one handler and returns the reply;
//! [`Catga::publish`] dispatches an event to all its handlers concurrently and reports every
//! failure. Both run the message through the behaviour stack. Events a handler queued with
//! [`Context::publish`] are published after it succeeds, before `send`/`publish` returns;
//! what becomes of them does not change the result of the message that queued them.

mod builder;
mod bytes;
mod detach;
mod dyn_send;
mod follow_up;
mod health;
mod inbound;
mod keep;
mod remote;
mod replay;
mod scheduled;
mod serve;
mod stored;
mod terminal;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;

use futures::StreamExt;

pub use builder::{
    CatgaBuilder, DEFAULT_BATCH_CONCURRENCY, DEFAULT_DEAD_LETTER_CAPACITY,
    DEFAULT_MAX_PAYLOAD_BYTES,
};

use crate::context::Context;
use crate::dispatch::guard;
use crate::dispatch::inline::InlineSlot;
use crate::dispatch::join::{join_in_place, scope_of};
use crate::dispatch::outcome::Outcome;
use crate::dispatch::slot_pool::SlotLease;
use crate::error::Error;
use crate::message::{Event, Request};
use crate::payload::EventRef;
use crate::pipeline::{Identity, Layer};
use crate::registry::{EventHandlerBox, Table};
use terminal::{EventTerminal, RequestTerminal};

/// The application: handlers, state and behaviours, ready to dispatch. See the
/// [module docs](self).
pub struct Catga<L = Identity> {
    inner: Arc<Inner<L>>,
}

struct Inner<L> {
    layers: L,
    table: Table,
    settings: builder::Settings,
    health: crate::health::HealthChecks,
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
            .field("service", &self.inner.settings.service)
            .field(
                "transport",
                &self.inner.settings.transport.as_ref().map(|t| t.name()),
            )
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
    /// Events the handler queued with [`Context::publish`] are published after it succeeded
    /// and before `send` returns, but **their fate never changes this result**: once the
    /// handler succeeded its reply is returned, even if a handler of a follow-up event fails
    /// or the transport refuses one (a caller seeing an error would retry, and run the
    /// command twice). Those failures go where failed events go: the `DeadLetter` layer, the
    /// application's dead-letter store, the `catga_follow_up_failures_total` metric and an
    /// error log with the ids. If the context's deadline passes while the follow-ups run in
    /// this process, the reply is returned and they finish in the background.
    ///
    /// # Errors
    /// [`ErrorKind::NoHandler`](crate::ErrorKind::NoHandler) if no handler is registered (only possible for messages allowed
    /// with `allow_unhandled`), the handler's own error as [`ErrorKind::Handler`](crate::ErrorKind::Handler), or whatever a
    /// behaviour decides ([`ErrorKind::Validation`](crate::ErrorKind::Validation), [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), …).
    #[inline]
    pub fn send<M: Request>(&self, msg: M) -> impl Future<Output = Result<M::Output, Error>> + '_ {
        self.send_with(msg, Context::new())
    }

    /// [`send`](Self::send) with a context the caller prepared (deadline, correlation id,
    /// headers, cancellation).
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` stores its arguments twice; see `publish_with`"
    )]
    pub fn send_with<M: Request>(
        &self,
        msg: M,
        ctx: Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + '_ {
        // An `async` block, not an `async fn`: see `publish_with`.
        async move {
            let Some(entry) = self.inner.table.request::<M>() else {
                return self.send_remote(msg, ctx).await;
            };
            let slot = pin!(InlineSlot::new());
            let terminal = RequestTerminal {
                entry,
                ctx: &ctx,
                slot: slot.as_ref(),
            };
            // Each branch builds the pipeline's future where it is awaited: one built before the
            // branch would be copied into the awaiting state (measured: a `memcpy` per dispatch).
            let output = if ctx.is_guarded() {
                guard::watch(&ctx, M::NAME, self.inner.layers.run(msg, &ctx, &terminal)).await
            } else {
                self.inner.layers.run(msg, &ctx, &terminal).await
            }?;
            if ctx.pending_len() > 0 {
                self.after_reply(&ctx).await;
            }
            Ok(output)
        }
    }

    /// Publishes what a request's handler queued, within the caller's deadline: if it passes
    /// first, the rest goes on in the background (see `detach`).
    pub(super) async fn after_reply(&self, ctx: &Context) {
        let queued = self.publish_queued(Self::queued(ctx));
        let deadline = ctx.deadline();
        let cancel = ctx.cancellation().cloned();
        let _ = detach::wait_or_detach("follow-up events", deadline, cancel, queued, drop).await;
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
            .buffered(self.inner.settings.batch_concurrency)
            .collect()
            .await
    }

    /// Publishes many events of one type, at most `batch_concurrency` at a time (see the
    /// builder), and returns each result in input order: what [`publish`](Self::publish)
    /// would return for that event.
    ///
    /// Through a transport, the events in flight share its connection, so they travel
    /// together instead of one round trip each: on Redis the `XADD`s of a batch leave in a
    /// few writes of the multiplexed connection (a batch of 64: a few round trips, not 64);
    /// on NATS the JetStream publishes are sent before their acknowledgements are awaited.
    /// Order between the events of one batch is not kept (they are in flight at once):
    /// publish one at a time where a consumer depends on their order.
    ///
    /// # Errors
    /// None for the batch as a whole; each event's own result is in the returned list.
    pub async fn publish_batch<E, I>(&self, events: I) -> Vec<Result<(), Error>>
    where
        E: Event,
        I: IntoIterator<Item = E>,
    {
        futures::stream::iter(events)
            .map(|event| self.publish(event))
            .buffered(self.inner.settings.batch_concurrency)
            .collect()
            .await
    }

    /// Publishes an event to all its handlers, which run concurrently. An event with no
    /// handlers is not an error.
    ///
    /// With a transport, the event goes to the transport and `publish` returns once the
    /// transport accepted it (for a durable one: stored); every service's handlers run when
    /// it arrives there, this one's included.
    ///
    /// # Errors
    /// [`ErrorKind::Publish`](crate::ErrorKind::Publish) listing every handler that failed (handlers that succeeded are not
    /// undone, and the events they queued are still published).
    #[inline]
    pub fn publish<E: Event>(&self, event: E) -> impl Future<Output = Result<(), Error>> + '_ {
        self.publish_with(event, Context::new())
    }

    /// [`publish`](Self::publish) with a context the caller prepared.
    ///
    /// A deadline or cancellation on the context bounds **the caller's wait**, not the
    /// event's handlers: an event is a fact, and its subscribers handle it whether or not its
    /// publisher still waits. Through a transport, the deadline bounds the wait for the broker
    /// to accept the event and is not sent with it. In process, when the deadline passes
    /// before the handlers finished, this returns [`ErrorKind::Timeout`](crate::ErrorKind::Timeout)
    /// (or `Cancelled`) and the handlers go on in the background; their failures go to the
    /// `DeadLetter` layer and the logs.
    // Not an `async fn`: an `async fn` moves its arguments into locals and keeps both copies
    // (the event and the 104-byte context twice); an `async move` block uses its captures in
    // place. Callers move this future, so its size is paid per publish (docs/performance.md).
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` stores its arguments twice; see `publish_with`"
    )]
    pub fn publish_with<E: Event>(
        &self,
        event: E,
        ctx: Context,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        async move {
            self.inner.layers.observe_publish(&event, &ctx);
            if let Some(transport) = self.inner.settings.transport.as_deref() {
                let format = self.inner.settings.wire_format;
                return if ctx.is_guarded() {
                    let sent = Self::publish_remote(transport, format, &event, &ctx);
                    Box::pin(guard::watch(&ctx, E::NAME, sent)).await
                } else {
                    Self::publish_remote(transport, format, &event, &ctx).await
                };
            }
            if ctx.is_guarded() {
                return self.publish_bounded(event, ctx).await;
            }
            let Some(entry) = self.inner.table.event::<E>() else {
                return Ok(());
            };
            let handlers = entry.handlers();
            // The handlers' futures run in a leased block of slots, not in this future: callers
            // move this future, and a publish through a transport uses no slot (slot_pool.rs).
            let lease = SlotLease::take();
            let slots = lease.slots();
            let outcome = self.run_event_handlers(handlers, &event, &ctx, slots).await;
            if ctx.pending_len() > 0 {
                self.publish_queued(Self::queued(&ctx)).await;
            }
            outcome.finish(E::NAME)
        }
    }

    /// An in-process publish whose caller set a deadline or cancellation: the caller waits
    /// within them, the handlers run to their end (see `detach`). Boxed and owned, so it can
    /// go on without the caller; a bounded publish arms a timer anyway.
    fn publish_bounded<E: Event>(
        &self,
        event: E,
        mut ctx: Context,
    ) -> impl Future<Output = Result<(), Error>> + use<L, E> {
        let started = tokio::time::Instant::now();
        let (deadline, cancel) = ctx.take_bounds();
        let app = self.clone();
        // Through the type-erased path, which boxes its futures anyway: a second caller of
        // `run_event_handlers` would stop it being inlined into `publish_with`, the hot path
        // (measured: 3 % more instructions per publish).
        let work = Box::pin(async move { app.handle_dyn(&event, ctx, None).await });
        async move {
            let waited = detach::wait_or_detach(E::NAME, deadline, cancel, work, |result| {
                if let Err(error) = result {
                    tracing::error!(target: "catga", error = %error,
                        "handlers of an event failed after its publisher stopped waiting (a DeadLetter layer keeps them)");
                }
            })
            .await;
            detach::caller_error(E::NAME, deadline, started, waited)
        }
    }

    /// Runs every handler of one event concurrently; returns their outcome.
    ///
    /// Up to four handlers run without allocating, in the caller's `slots`; the per-handler
    /// futures that `join!` moves around are then a few words each. More handlers are joined
    /// with `join_all`, which allocates.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` stores its arguments twice; see `publish_with`"
    )]
    fn run_event_handlers<'a, E: Event>(
        &'a self,
        handlers: &'a [EventHandlerBox<E>],
        event: &'a E,
        ctx: &'a Context,
        slots: [Pin<&'a InlineSlot>; 4],
    ) -> impl Future<Output = Outcome> + 'a {
        // An `async` block, not an `async fn`: see `publish_with`.
        async move {
            let terminal = |index: usize| EventTerminal {
                handler: &handlers[index],
                event,
                ctx,
                scope: scope_of(index),
                slot: slots[index],
            };
            let mut outcome = Outcome::new();
            let mut note = |index: usize, result: Result<(), Error>| {
                outcome.note(handlers[index].0.name, result);
            };
            match handlers.len() {
                0 => {}
                1 => note(0, self.run_event_handler(&terminal(0)).await),
                2 => {
                    let (t0, t1) = (terminal(0), terminal(1));
                    let f0 = pin!(self.run_event_handler(&t0));
                    let f1 = pin!(self.run_event_handler(&t1));
                    join_in_place(&mut [f0, f1], note).await;
                }
                3 => {
                    let (t0, t1, t2) = (terminal(0), terminal(1), terminal(2));
                    let f0 = pin!(self.run_event_handler(&t0));
                    let f1 = pin!(self.run_event_handler(&t1));
                    let f2 = pin!(self.run_event_handler(&t2));
                    join_in_place(&mut [f0, f1, f2], note).await;
                }
                4 => {
                    let (t0, t1) = (terminal(0), terminal(1));
                    let (t2, t3) = (terminal(2), terminal(3));
                    let f0 = pin!(self.run_event_handler(&t0));
                    let f1 = pin!(self.run_event_handler(&t1));
                    let f2 = pin!(self.run_event_handler(&t2));
                    let f3 = pin!(self.run_event_handler(&t3));
                    join_in_place(&mut [f0, f1, f2, f3], note).await;
                }
                n => {
                    let one = |index: usize| async move {
                        let slot = pin!(InlineSlot::new());
                        let terminal = EventTerminal {
                            handler: &handlers[index],
                            event,
                            ctx,
                            scope: scope_of(index),
                            slot: slot.as_ref(),
                        };
                        self.run_event_handler(&terminal).await
                    };
                    let results = futures::future::join_all((0..n).map(one)).await;
                    for (index, result) in results.into_iter().enumerate() {
                        note(index, result);
                    }
                }
            }
            outcome
        }
    }

    /// One handler of a publish through the behaviour stack.
    #[inline]
    fn run_event_handler<'a, E: Event>(
        &'a self,
        terminal: &'a EventTerminal<'a, E>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        self.inner.layers.run(
            EventRef::new(terminal.event, terminal.handler.0.name),
            terminal.ctx,
            terminal,
        )
    }
}
