//! Table entries: a message type's handler(s), callable typed (the fast path) or type-erased
//! (the bytes path and events queued with `ctx.publish`).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;

use crate::context::{Context, in_scope};
use crate::error::Error;
use crate::handler::{EventHandler, HandlerMeta, RequestHandler};
use std::pin::{Pin, pin};
use std::task::Poll;

use crate::inline::{InlineSlot, SlotFuture, fits};
use crate::message::{Event, MessageInfo, Request};
use crate::payload::AnyMessage;

/// A request handler with its type erased but its message type known.
pub(crate) trait ErasedRequestHandler<M: Request>: Send + Sync {
    fn call<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>>;
}

/// An event handler with its type erased but its event type known.
pub(crate) trait ErasedEventHandler<E: Event>: Send + Sync {
    fn call<'a>(
        &'a self,
        event: &'a E,
        ctx: &'a Context,
        scope: u32,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<(), Error>>;
}

pub(crate) struct BoundRequest<M, H: RequestHandler<M>>
where
    M: Request,
{
    pub(crate) state: H::State,
    pub(crate) spilled: AtomicBool,
    pub(crate) _message: PhantomData<fn(M)>,
}

pub(crate) struct BoundEvent<E: Event, H: EventHandler<E>> {
    pub(crate) state: H::State,
    pub(crate) spilled: AtomicBool,
    pub(crate) _message: PhantomData<fn(E)>,
}

#[cold]
fn report_spill(spilled: &AtomicBool, handler: &'static str, size: usize) {
    if !spilled.swap(true, Ordering::Relaxed) {
        tracing::debug!(
            handler,
            future_bytes = size,
            inline_bytes = crate::inline::INLINE_FUTURE_BYTES,
            "handler future does not fit inline; it is boxed on every call"
        );
    }
}

fn store<'a, F, T>(
    future: F,
    slot: Pin<&'a InlineSlot>,
    spilled: &AtomicBool,
    handler: &'static str,
) -> SlotFuture<'a, T>
where
    F: Future<Output = T> + Send + 'a,
{
    // `fits` is a constant per handler, so the common branch compiles to nothing.
    if !fits::<F>() {
        report_spill(spilled, handler, size_of::<F>());
    }
    SlotFuture::new(slot, future)
}

impl<M: Request, H: RequestHandler<M>> ErasedRequestHandler<M> for BoundRequest<M, H> {
    #[inline]
    fn call<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>> {
        let future = attempt(ctx, H::call(&self.state, msg, ctx));
        store(future, slot, &self.spilled, H::META.name)
    }
}

impl<E: Event, H: EventHandler<E>> ErasedEventHandler<E> for BoundEvent<E, H> {
    #[inline]
    fn call<'a>(
        &'a self,
        event: &'a E,
        ctx: &'a Context,
        scope: u32,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<(), Error>> {
        let future = scoped_attempt(ctx, scope, H::call(&self.state, event, ctx));
        store(future, slot, &self.spilled, H::META.name)
    }
}

pin_project_lite::pin_project! {
    /// One attempt of a handler: if it fails, the events it queued with `ctx.publish` are
    /// dropped, so a failed attempt never announces what it did not do and a retry starts
    /// clean. A request's attempt drops what was queued after it started; an event handler's
    /// attempt drops what its `scope` queued (its siblings in the publish share the context),
    /// and is polled with that scope set so what it queues is tagged with it.
    ///
    /// A hand-written future rather than an `async fn`: it sits on every dispatch, and a plain
    /// struct has no state machine to enter and no drop glue to run.
    pub(crate) struct Attempt<'c, F> {
        ctx: &'c Context,
        discard: Discard,
        #[pin]
        handler: F,
    }
}

#[derive(Clone, Copy)]
enum Discard {
    /// Everything queued after this many events.
    After(usize),
    /// Everything queued by this handler scope.
    Scope(u32),
}

/// A request handler's attempt.
#[inline]
pub(crate) fn attempt<F>(ctx: &Context, handler: F) -> Attempt<'_, F> {
    Attempt {
        ctx,
        discard: Discard::After(ctx.pending_len()),
        handler,
    }
}

/// An event handler's attempt, tagged with its scope in the publish.
#[inline]
pub(crate) fn scoped_attempt<F>(ctx: &Context, scope: u32, handler: F) -> Attempt<'_, F> {
    Attempt {
        ctx,
        discard: Discard::Scope(scope),
        handler,
    }
}

impl<T, F> Future for Attempt<'_, F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match *this.discard {
            Discard::After(_) => this.handler.poll(cx),
            Discard::Scope(scope) => in_scope(scope, || this.handler.poll(cx)),
        };
        let result = std::task::ready!(polled);
        if result.is_err()
            && let Some(pending) = this.ctx.pending()
        {
            match *this.discard {
                Discard::After(mark) => pending.truncate(mark),
                Discard::Scope(scope) => pending.discard_scope(scope),
            }
        }
        Poll::Ready(result)
    }
}

/// The entry of a request type: its one handler.
pub(crate) struct RequestEntry<M: Request> {
    meta: HandlerMeta,
    handler: Box<dyn ErasedRequestHandler<M>>,
}

impl<M: Request> RequestEntry<M> {
    pub(crate) fn new(meta: HandlerMeta, handler: Box<dyn ErasedRequestHandler<M>>) -> Self {
        RequestEntry { meta, handler }
    }

    #[inline]
    pub(crate) fn call<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>> {
        self.handler.call(msg, ctx, slot)
    }
}

/// A request entry seen without its message type.
pub trait AnyRequestEntry: Any + Send + Sync {
    /// The handler.
    fn meta(&self) -> &HandlerMeta;
    /// The message type.
    fn info(&self) -> &'static MessageInfo;
    /// Calls the handler with a message that must be of the entry's type.
    fn call_dyn<'a>(
        &'a self,
        msg: Box<dyn AnyMessage>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>>;
}

/// A message of the wrong type reached a type-erased entry: a bug in catga, reported rather
/// than panicking.
fn mismatch(info: &'static MessageInfo) -> Error {
    crate::ErrorKind::WrongKind {
        message: info.name(),
        expected: info.type_name(),
        actual: "another type",
    }
    .into()
}

impl<M: Request> AnyRequestEntry for RequestEntry<M> {
    fn meta(&self) -> &HandlerMeta {
        &self.meta
    }
    fn info(&self) -> &'static MessageInfo {
        M::info()
    }
    fn call_dyn<'a>(
        &'a self,
        msg: Box<dyn AnyMessage>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>> {
        Box::pin(async move {
            let msg = msg
                .into_any()
                .downcast::<M>()
                .map_err(|_| mismatch(M::info()))?;
            let slot = pin!(InlineSlot::new());
            let output = self.handler.call(*msg, ctx, slot.as_ref()).await?;
            Ok(Box::new(output) as Box<dyn Any + Send>)
        })
    }
}

pub(crate) type EventHandlerBox<E> = (HandlerMeta, Box<dyn ErasedEventHandler<E>>);

/// The entry of an event type: all its handlers.
pub(crate) struct EventEntry<E: Event> {
    handlers: Vec<EventHandlerBox<E>>,
    metas: Vec<HandlerMeta>,
}

impl<E: Event> EventEntry<E> {
    pub(crate) fn new_boxed() -> Box<dyn AnyEventEntry> {
        Box::new(EventEntry::<E> {
            handlers: Vec::new(),
            metas: Vec::new(),
        })
    }

    #[inline]
    pub(crate) fn handlers(&self) -> &[EventHandlerBox<E>] {
        &self.handlers
    }
}

/// Calls one event handler (typed).
#[inline]
pub(crate) fn call_event<'a, E: Event>(
    handler: &'a EventHandlerBox<E>,
    event: &'a E,
    ctx: &'a Context,
    scope: u32,
    slot: Pin<&'a InlineSlot>,
) -> SlotFuture<'a, Result<(), Error>> {
    handler.1.call(event, ctx, scope, slot)
}

/// An event entry seen without its event type.
pub trait AnyEventEntry: Any + Send + Sync {
    /// The handlers, in registration order.
    fn metas(&self) -> &[HandlerMeta];
    /// Calls handler `index` with an event that must be of the entry's type; `scope` tags the
    /// events it queues (see `Context`).
    fn call_dyn<'a>(
        &'a self,
        index: usize,
        event: &'a dyn AnyMessage,
        ctx: &'a Context,
        scope: u32,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Adds a handler produced by `bind_event` for the same event type; `false` if it was
    /// for another type (and so was not added).
    #[doc(hidden)]
    fn push(&mut self, handler: Box<dyn Any + Send + Sync>) -> bool;
}

impl<E: Event> AnyEventEntry for EventEntry<E> {
    fn metas(&self) -> &[HandlerMeta] {
        &self.metas
    }
    fn call_dyn<'a>(
        &'a self,
        index: usize,
        event: &'a dyn AnyMessage,
        ctx: &'a Context,
        scope: u32,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let event = event
                .as_any()
                .downcast_ref::<E>()
                .ok_or_else(|| mismatch(E::info()))?;
            match self.handlers.get(index) {
                Some(handler) => {
                    let slot = pin!(InlineSlot::new());
                    call_event(handler, event, ctx, scope, slot.as_ref()).await
                }
                None => Err(mismatch(E::info())),
            }
        })
    }
    fn push(&mut self, handler: Box<dyn Any + Send + Sync>) -> bool {
        match handler.downcast::<EventHandlerBox<E>>() {
            Ok(handler) => {
                self.metas.push(handler.0);
                self.handlers.push(*handler);
                true
            }
            Err(_) => false,
        }
    }
}
