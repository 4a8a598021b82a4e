//! The ends of the pipeline: how each dispatch path calls its handler.
//!
//! Each terminal also keeps the events a handler queued with `ctx.publish` honest: when the
//! handler fails, what it queued during that attempt is discarded.

use std::any::Any;

use crate::context::Context;
use crate::error::Error;
use crate::message::{Event, Request};
use crate::payload::{DynEventRef, DynRequest, EventRef};
use crate::pipeline::Terminal;
use crate::registry::{AnyEventEntry, AnyRequestEntry, RequestEntry};

use crate::registry::{EventHandlerBox, call_event};

/// A typed request's handler.
pub(crate) struct RequestTerminal<'e, M: Request>(pub(crate) &'e RequestEntry<M>);

impl<M: Request> Terminal<M> for RequestTerminal<'_, M> {
    #[inline]
    async fn call(&self, msg: M, ctx: &Context) -> Result<M::Output, Error> {
        let mark = ctx.pending().len();
        let result = self.0.call(msg, ctx).await;
        if result.is_err() {
            ctx.pending().truncate(mark);
        }
        result
    }
}

/// One handler of a typed event, tagged with its scope in the publish.
pub(crate) struct EventTerminal<'e, E: Event> {
    pub(crate) handler: &'e EventHandlerBox<E>,
    pub(crate) scope: u32,
}

impl<'a, E: Event> Terminal<EventRef<'a, E>> for EventTerminal<'_, E> {
    #[inline]
    async fn call(&self, event: EventRef<'a, E>, ctx: &Context) -> Result<(), Error> {
        let result = call_event(self.handler, event.0, ctx).await;
        if result.is_err() {
            ctx.pending().discard_scope(self.scope);
        }
        result
    }
}

/// The handler of a request that arrived as bytes.
pub(crate) struct DynRequestTerminal<'e>(pub(crate) &'e dyn AnyRequestEntry);

impl Terminal<DynRequest> for DynRequestTerminal<'_> {
    async fn call(&self, msg: DynRequest, ctx: &Context) -> Result<Box<dyn Any + Send>, Error> {
        let mark = ctx.pending().len();
        let result = self.0.call_dyn(msg.0, ctx).await;
        if result.is_err() {
            ctx.pending().truncate(mark);
        }
        result
    }
}

/// One handler of an event known only at run time.
pub(crate) struct DynEventTerminal<'e> {
    pub(crate) entry: &'e dyn AnyEventEntry,
    pub(crate) index: usize,
    pub(crate) scope: u32,
}

impl<'a> Terminal<DynEventRef<'a>> for DynEventTerminal<'_> {
    async fn call(&self, event: DynEventRef<'a>, ctx: &Context) -> Result<(), Error> {
        let result = self.entry.call_dyn(self.index, event.0, ctx).await;
        if result.is_err() {
            ctx.pending().discard_scope(self.scope);
        }
        result
    }
}
