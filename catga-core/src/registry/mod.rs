//! The registry: from the handlers `#[handler]` registered to a dense dispatch table.
//!
//! Every `#[command]`/`#[query]`/`#[event]` submits a [`MessageDescriptor`] and every
//! `#[handler]` a [`HandlerDescriptor`] to `inventory`, across all crates linked into the
//! program. [`CatgaBuilder::build`](crate::CatgaBuilder::build) reads them once, resolves each
//! handler's state, checks the whole program and reports every problem together
//! ([`BuildError`]), then lays the handlers out in a table indexed by each message type's slot.

mod descriptor;
mod entry;
mod problem;
mod table;

pub use descriptor::{
    Bind, Binding, HandlerDescriptor, MessageDescriptor, bind_event, bind_request,
};
pub use entry::{AnyEventEntry, AnyRequestEntry};
pub(crate) use entry::{EventHandlerBox, TypedRequest, call_event};
pub use problem::{BuildError, Problem};
pub(crate) use table::{Entry, Table};
