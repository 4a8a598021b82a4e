//! Table entries: a message type's handler(s), callable typed (the fast path) or type-erased
//! (the bytes path and events queued with `ctx.publish`).

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;

use crate::context::Context;
use crate::dispatch::attempt::{attempt, scoped_attempt};
use crate::error::Error;
use crate::handler::{EventHandler, HandlerMeta, RequestHandler};
use std::pin::{Pin, pin};
use std::task::Poll;

use crate::dispatch::inline::{InlineSlot, SlotFuture, fits};
use crate::message::AnyMessage;
use crate::message::{Event, MessageInfo, Request};

/// A request handler with its type erased but its message type known.
pub(crate) trait ErasedRequestHandler<M: Request>: Send + Sync {
    fn call<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>>;

    /// The type-erased call of the bytes path: the handler's future boxed, its output boxed.
    /// Built per handler from the same `attempt` as [`call`](Self::call), so a message type
    /// adds no future of its own to compile (the bytes path allocates anyway).
    fn call_any<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>>;
}

pin_project_lite::pin_project! {
    /// A request handler's attempt whose output is boxed: the type-erased call's future
    /// (hand-written: `futures`' `Map` costs several functions per handler to compile).
    struct BoxOutput<F> {
        #[pin]
        attempt: F,
    }
}

impl<T: Send + 'static, F: Future<Output = Result<T, Error>>> Future for BoxOutput<F> {
    type Output = Result<Box<dyn Any + Send>, Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match std::task::ready!(self.project().attempt.poll(cx)) {
            Ok(output) => Poll::Ready(Ok(Box::new(output))),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// The future of a call that reached the wrong entry (a bug in catga; see `mismatch`).
fn mismatched<'a>(info: &'static MessageInfo) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>> {
    Box::pin(futures::future::ready(Err(mismatch(info))))
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
            inline_bytes = crate::dispatch::inline::INLINE_FUTURE_BYTES,
            "handler future does not fit inline; it is boxed on every call"
        );
    }
}

#[inline(always)]
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
    #[inline(always)]
    fn call<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>> {
        let future = attempt(ctx, H::call(&self.state, msg, ctx));
        store(future, slot, &self.spilled, H::META.name)
    }

    #[inline(always)]
    fn call_any<'a>(
        &'a self,
        msg: M,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>> {
        Box::pin(BoxOutput {
            attempt: attempt(ctx, H::call(&self.state, msg, ctx)),
        })
    }
}

impl<E: Event, H: EventHandler<E>> ErasedEventHandler<E> for BoundEvent<E, H> {
    #[inline(always)]
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
    crate::ErrorKind::Internal {
        message: info.name(),
        what: "a message of another type reached this message's table entry",
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
        match msg.into_any().downcast::<M>() {
            Ok(msg) => self.handler.call_any(*msg, ctx),
            Err(_) => mismatched(M::info()),
        }
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
