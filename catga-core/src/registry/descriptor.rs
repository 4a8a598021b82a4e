//! What the macros submit to `inventory`.

use std::any::Any;
use std::marker::PhantomData;

use crate::handler::{EventHandler, HandlerMeta, MissingState, RequestHandler};
use crate::message::{Event, MessageInfo, Request};
use crate::registry::entry::{BoundEvent, BoundRequest, EventEntry, RequestEntry};
use crate::registry::{AnyEventEntry, AnyRequestEntry};
use crate::state::States;

/// A declared message type, submitted by the message attributes.
#[derive(Debug)]
pub struct MessageDescriptor {
    /// The message's static facts.
    pub info: fn() -> &'static MessageInfo,
}

inventory::collect!(MessageDescriptor);

/// A handler, submitted by `#[handler]`.
#[derive(Debug)]
pub struct HandlerDescriptor {
    /// The message it handles.
    pub message: fn() -> &'static MessageInfo,
    /// Its name and location.
    pub meta: HandlerMeta,
    /// Resolves its state and produces a table entry (see `__private::bind_request`).
    pub bind: fn(&States) -> Result<Binding, MissingState>,
}

inventory::collect!(HandlerDescriptor);

/// A handler with its state resolved, ready to be placed in a table.
pub enum Binding {
    /// The single handler of a request.
    Request(Box<dyn AnyRequestEntry>),
    /// One handler of an event; `new_entry` makes the event's (typed) handler list.
    Event {
        /// Makes the event's (typed) handler list.
        new_entry: fn() -> Box<dyn AnyEventEntry>,
        /// The typed handler, added to that list.
        handler: Box<dyn Any + Send + Sync>,
    },
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Binding::Request(e) => write!(f, "Binding::Request({})", e.info().name()),
            Binding::Event { .. } => f.write_str("Binding::Event"),
        }
    }
}

/// Binds the request handler `H` of `M`; its address is what `#[handler]` submits.
pub fn bind_request<M: Request, H: RequestHandler<M>>(
    states: &States,
) -> Result<Binding, MissingState> {
    let state = H::resolve(states)?;
    let bound = BoundRequest::<M, H> {
        state,
        spilled: Default::default(),
        _message: PhantomData,
    };
    Ok(Binding::Request(Box::new(RequestEntry::<M>::new(
        H::META,
        Box::new(bound),
    ))))
}

/// Binds the event handler `H` of `E`.
pub fn bind_event<E: Event, H: EventHandler<E>>(states: &States) -> Result<Binding, MissingState> {
    let state = H::resolve(states)?;
    let bound = BoundEvent::<E, H> {
        state,
        spilled: Default::default(),
        _message: PhantomData,
    };
    let handler: crate::registry::entry::EventHandlerBox<E> = (H::META, Box::new(bound));
    Ok(Binding::Event {
        new_entry: EventEntry::<E>::new_boxed,
        handler: Box::new(handler),
    })
}
