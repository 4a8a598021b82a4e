//! What the macros submit to `inventory`.

use std::any::Any;
use std::marker::PhantomData;

use crate::handler::{EventHandler, HandlerMeta, MissingState, OwnedHandler, RequestHandler, Role};
use crate::message::{Event, Message, MessageInfo, Request};
use crate::registry::AnyEventEntry;
use crate::registry::entry::{BoundEvent, EventEntry, RequestEntry};
use crate::state::States;

/// The macros' binding glue for a message type: its role, and how a handler of it becomes a
/// table entry. Implemented by the message attributes beside [`Message`]; kept out of
/// `Message` so the message layer depends on nothing above it.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a catga message",
    label = "not a command, query or event",
    note = "annotate the type with `#[command]`, `#[query(output = …)]` or `#[event]`"
)]
pub trait Bind: Message {
    /// The message's kind as a type, so compile-time checks can depend on it.
    type __Role: Role;
    /// Binds the handler `H` that takes the message by value.
    fn __bind_owned<H: OwnedHandler<Self>>(states: &States) -> Result<Binding, MissingState>;
    /// Binds a handler that borrows the message: `bind_event` for an event. Only events
    /// override it; for a request the handler is a compile error (`assert_by_ref`), so the
    /// default never runs.
    fn __bind_borrowed<H: EventHandler<Self>>(_states: &States) -> Result<Binding, MissingState> {
        Err(MissingState(Vec::new()))
    }
}

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
    Request(RequestEntry),
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
            Binding::Request(e) => write!(f, "Binding::Request({})", e.erased().info().name()),
            Binding::Event { .. } => f.write_str("Binding::Event"),
        }
    }
}

/// Binds the request handler `H` of `M`; its address is what `#[handler]` submits.
#[inline(always)]
pub fn bind_request<M: Request, H: RequestHandler<M>>(
    states: &States,
) -> Result<Binding, MissingState> {
    Ok(Binding::Request(RequestEntry::new::<M, H>(H::resolve(
        states,
    )?)))
}

/// Binds the event handler `H` of `E`.
#[inline(always)]
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
