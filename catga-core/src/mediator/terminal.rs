//! The ends of the pipeline: how each dispatch path calls its handler.
//!
//! Terminals return the handler's (inline) future directly rather than wrapping it in another
//! `async` block: every wrapper would move the inline buffer once more. The bookkeeping for
//! events queued by a failed attempt lives inside the stored future (`registry::entry`).
//!
//! Each terminal holds the dispatch's context itself (the stack passes the same one down) so the
//! future it returns borrows a single lifetime, the terminal's; an `impl Future` cannot name the
//! intersection of two.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use std::future::Future;
use std::pin::Pin;

use crate::context::Context;
use crate::dispatch::inline::InlineSlot;
use crate::dispatch::panic::panicked;
use crate::error::Error;
use crate::message::{Event, Request};
use crate::payload::{DynEventRef, DynRequest, EventRef};
use crate::pipeline::Terminal;
use crate::registry::{AnyEventEntry, AnyRequestEntry, EventHandlerBox, TypedRequest, call_event};

/// A typed request's handler.
pub(crate) struct RequestTerminal<'e, M: Request> {
    pub(crate) entry: TypedRequest<'e, M>,
    pub(crate) ctx: &'e Context,
    pub(crate) slot: Pin<&'e InlineSlot>,
}

impl<'e, M: Request> Terminal<M> for RequestTerminal<'e, M> {
    #[inline]
    fn call(
        &self,
        msg: M,
        _ctx: &Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send {
        self.entry.call(msg, self.ctx, self.slot)
    }
}

/// One handler of a typed event, tagged with its scope in the publish.
///
/// It holds the event as well: the payload that reaches it through the stack is always this
/// same reference (behaviours cannot construct an `EventRef`), and keeping the impl general
/// over the payload's lifetime is what lets the publish future be `Send` for all lifetimes.
pub(crate) struct EventTerminal<'e, E: Event> {
    pub(crate) handler: &'e EventHandlerBox<E>,
    pub(crate) event: &'e E,
    pub(crate) ctx: &'e Context,
    pub(crate) scope: u32,
    pub(crate) slot: Pin<&'e InlineSlot>,
}

impl<'a, 'e, E: Event> Terminal<EventRef<'a, E>> for EventTerminal<'e, E> {
    #[inline]
    fn call(
        &self,
        _event: EventRef<'a, E>,
        _ctx: &Context,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let (handler, event, ctx, slot) = (self.handler, self.event, self.ctx, self.slot);
        call_event(handler, event, ctx, self.scope, slot)
    }
}

/// The handler of a request that arrived as bytes.
pub(crate) struct DynRequestTerminal<'e> {
    pub(crate) entry: &'e dyn AnyRequestEntry,
    pub(crate) ctx: &'e Context,
}

impl<'e> Terminal<DynRequest> for DynRequestTerminal<'e> {
    fn call(
        &self,
        msg: DynRequest,
        _ctx: &Context,
    ) -> impl Future<Output = Result<Box<dyn Any + Send>, Error>> + Send {
        let (entry, ctx) = (self.entry, self.ctx);
        let (message, handler) = (entry.info().name(), entry.meta().name);
        // Inside the behaviours, so a `DeadLetter` layer sees a panic as the failure it is.
        AssertUnwindSafe(entry.call_dyn(msg.0, ctx))
            .catch_unwind()
            .map(move |result| result.unwrap_or_else(|p| Err(panicked(message, handler, p))))
    }
}

/// One handler of an event known only at run time (holds the event, as [`EventTerminal`]).
pub(crate) struct DynEventTerminal<'e> {
    pub(crate) entry: &'e dyn AnyEventEntry,
    pub(crate) event: &'e dyn crate::message::AnyMessage,
    pub(crate) ctx: &'e Context,
    pub(crate) index: usize,
    pub(crate) scope: u32,
}

impl<'a> Terminal<DynEventRef<'a>> for DynEventTerminal<'_> {
    fn call(
        &self,
        _event: DynEventRef<'a>,
        _ctx: &Context,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        let (entry, event, ctx) = (self.entry, self.event, self.ctx);
        let message = event.info().name();
        let handler = entry.metas().get(self.index).map_or("", |meta| meta.name);
        // Inside the behaviours, so a `DeadLetter` layer sees a panic as the failure it is.
        AssertUnwindSafe(entry.call_dyn(self.index, event, ctx, self.scope))
            .catch_unwind()
            .map(move |result| result.unwrap_or_else(|p| Err(panicked(message, handler, p))))
    }
}
