//! Table entries: a message type's handler(s), callable typed (the fast path) or type-erased
//! (the bytes path and events queued with `ctx.publish`).

use std::any::{Any, TypeId};
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
use crate::message::{Event, Message, MessageInfo, Request};

/// A request handler's attempt whose output is boxed: the type-erased call's future
/// (hand-written: `futures`' `Map` costs several functions per handler to compile; pinning
/// projected by hand for the reason given on `Attempt`).
struct BoxOutput<F> {
    attempt: F,
}

impl<T: Send + 'static, F: Future<Output = Result<T, Error>>> Future for BoxOutput<F> {
    type Output = Result<Box<dyn Any + Send>, Error>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `attempt` is structurally pinned: reached only through this projection,
        // never moved, and `BoxOutput` has no `Drop` impl.
        let attempt = unsafe { Pin::new_unchecked(&mut self.get_unchecked_mut().attempt) };
        match std::task::ready!(attempt.poll(cx)) {
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

/// A request handler with its state: what a [`RequestEntry`] holds, behind `dyn`.
pub(crate) struct BoundRequest<M, H: RequestHandler<M>>
where
    M: Request,
{
    pub(crate) meta: HandlerMeta,
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
    if !const { fits::<F>() } {
        report_spill(spilled, handler, const { size_of::<F>() });
    }
    SlotFuture::new(slot, future)
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

/// The typed call of a request handler: the `BoundRequest<M, H>` it was made for (as a data
/// pointer), the message, and where to store the handler's future.
type TypedCall<M> = for<'a> unsafe fn(
    *const (),
    M,
    &'a Context,
    Pin<&'a InlineSlot>,
) -> SlotFuture<'a, Result<<M as Message>::Output, Error>>;

/// A [`TypedCall`] with its message type erased so that entries of every type share one
/// struct; turned back only for the message type it was made for ([`RequestEntry::typed`]).
type ErasedCall = unsafe fn();

/// The entry of a request type: its one handler, callable typed (the `send` path) or
/// type-erased (the bytes path).
///
/// Not generic over the message on purpose: the drop glue of a generic entry (and of a boxed
/// trait object per message type) is compiled into one codegen unit a debug build shares
/// between all handlers, and recompiles whenever any handler changes.
pub struct RequestEntry {
    bound: Box<dyn AnyRequestEntry>,
    /// `call_typed::<M, H>`, erased.
    call: ErasedCall,
    /// `M`: the only type `call` is turned back for.
    message: TypeId,
}

impl RequestEntry {
    /// The entry of `H`, the handler of `M`, with its state resolved.
    #[inline(always)]
    pub(crate) fn new<M: Request, H: RequestHandler<M>>(state: H::State) -> Self {
        let bound: Box<dyn AnyRequestEntry> = Box::new(BoundRequest::<M, H> {
            meta: H::META,
            state,
            spilled: AtomicBool::new(false),
            _message: PhantomData,
        });
        let call: TypedCall<M> = call_typed::<M, H>;
        RequestEntry {
            bound,
            // SAFETY: a fn pointer to fn pointer transmute (same size); it is only called after
            // being turned back into exactly `TypedCall<M>`, in `typed`, guarded by `message`.
            call: unsafe { std::mem::transmute::<TypedCall<M>, ErasedCall>(call) },
            message: TypeId::of::<M>(),
        }
    }

    /// The handler, type-erased.
    pub(crate) fn erased(&self) -> &dyn AnyRequestEntry {
        &*self.bound
    }

    /// The handler, callable with an `M`, if `M` is the entry's message type: one type-id
    /// compare.
    #[inline]
    pub(crate) fn typed<M: Request>(&self) -> Option<TypedRequest<'_, M>> {
        if self.message != TypeId::of::<M>() {
            return None;
        }
        Some(TypedRequest {
            // SAFETY: `message` says `call` was made from a `TypedCall<M>` (see `new`).
            call: unsafe { std::mem::transmute::<ErasedCall, TypedCall<M>>(self.call) },
            bound: &*self.bound,
        })
    }
}

impl std::fmt::Debug for RequestEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestEntry({})", self.bound.info().name())
    }
}

/// A request entry seen with its message type: [`RequestEntry::typed`].
pub(crate) struct TypedRequest<'e, M: Request> {
    call: TypedCall<M>,
    /// The `BoundRequest<M, H>` that `call` was made for.
    bound: &'e dyn AnyRequestEntry,
}

impl<'e, M: Request> TypedRequest<'e, M> {
    /// Calls the handler with `msg`; its future is stored in `slot`.
    #[inline(always)]
    pub(crate) fn call<'a>(
        &self,
        msg: M,
        ctx: &'a Context,
        slot: Pin<&'a InlineSlot>,
    ) -> SlotFuture<'a, Result<M::Output, Error>>
    where
        'e: 'a,
    {
        let bound = (self.bound as *const dyn AnyRequestEntry).cast::<()>();
        // SAFETY: `call` and `bound` come from the same entry, made for `M` (checked in
        // `typed`), and the entry outlives `'e: 'a`.
        unsafe { (self.call)(bound, msg, ctx, slot) }
    }
}

/// The typed call of handler `H` of `M`.
///
/// # Safety
/// `bound` points to a live `BoundRequest<M, H>` that outlives `'a`.
#[inline(always)]
unsafe fn call_typed<'a, M: Request, H: RequestHandler<M>>(
    bound: *const (),
    msg: M,
    ctx: &'a Context,
    slot: Pin<&'a InlineSlot>,
) -> SlotFuture<'a, Result<M::Output, Error>> {
    // SAFETY: the caller's contract.
    let bound = unsafe { &*(bound as *const BoundRequest<M, H>) };
    let future = attempt(ctx, H::call(&bound.state, msg, ctx));
    store(future, slot, &bound.spilled, H::META.name)
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

// Every method is `#[inline(always)]`: a debug build then compiles it into the handler's own
// codegen unit (where its vtable is made) instead of one unit shared by all handlers, which
// recompiled whenever any handler changed.
impl<M: Request, H: RequestHandler<M>> AnyRequestEntry for BoundRequest<M, H> {
    #[inline(always)]
    fn meta(&self) -> &HandlerMeta {
        &self.meta
    }
    #[inline(always)]
    fn info(&self) -> &'static MessageInfo {
        M::info()
    }
    /// The bytes path: the handler's future boxed, its output boxed (built from the same
    /// `attempt` as the typed call, so a message type adds no future of its own to compile).
    #[inline(always)]
    fn call_dyn<'a>(
        &'a self,
        msg: Box<dyn AnyMessage>,
        ctx: &'a Context,
    ) -> BoxFuture<'a, Result<Box<dyn Any + Send>, Error>> {
        match msg.into_any().downcast::<M>() {
            Ok(msg) => Box::pin(BoxOutput {
                attempt: attempt(ctx, H::call(&self.state, *msg, ctx)),
            }),
            // Bound and dropped, so the whole `Result` is moved in both arms and needs no drop
            // glue of its own (one function fewer per message).
            Err(other) => {
                drop(other);
                mismatched(M::info())
            }
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
