//! Support for macro-generated code. Not public API: anything here may change in any release.

pub use inventory;
pub use serde;

pub use crate::codec::{Codec, CodecError, Json, MessagePack, WireFormat};
pub use crate::dispatch::converted::Converted;
pub use crate::dispatch::outcome::Outcome;
pub use crate::error::{BoxError, Error, HandlerFailure};
pub use crate::handler::{
    EventHandler, EventRole, HandlerMeta, MissingState, OwnedHandler, RequestHandler, RequestRole,
};
pub use crate::message::AnyMessage;
pub use crate::message::{Location, MessageInfo, MessageKind, MessagePolicy, OutputCodec};
pub use crate::pipeline::Layer;
pub use crate::policy::{Rate, Skip};
pub use crate::registry::{
    Bind, Binding, HandlerDescriptor, MessageDescriptor, bind_event, bind_request,
};
pub use crate::state::States;
pub use crate::static_app::{
    StaticApp, StaticBuilder, StaticRoute, StaticSubscribers, run_static_event,
};
pub use crate::validate::ValidationErrors;
pub use futures::future::BoxFuture;
pub use futures::join;

pub mod probes;
pub use probes::{ErrorSlot, Probe, inner_retryable};

// The prelude names generated code uses through its one `use …::__private as __catga;`: one
// short path per name keeps every expansion (parsed and resolved on each build) small.
pub use crate::context::Context;
pub use crate::message::{Command, Event, Message, Query, Request};
pub use std::future::Future;
pub use std::marker::Send;
pub use std::option::Option::{self, None, Some};
pub use std::result::Result::{self, Err, Ok};
pub use std::sync::Arc;
pub use std::vec::Vec;

/// The catga [`Error`] a handler's `Err` becomes: its boxed error, with whether it (or a catga
/// error along its source chain) is retryable and its code, probed at the handler.
pub fn handler_error(
    message: &'static str,
    handler: &'static str,
    boxed: BoxError,
    retryable: bool,
    coded: Option<(&'static str, Option<serde_json::Value>)>,
) -> Error {
    let retryable = retryable || inner_retryable(&boxed);
    Error::__from_handler_boxed(message, handler, boxed, retryable, coded)
}

use std::time::Duration;

/// `Duration::from_millis` for generated statics.
pub const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The type-erased JSON codec of a request's output (stored in `MessageInfo`).
pub const fn request_output_json<M: crate::message::Request>() -> OutputCodec {
    OutputCodec {
        encode_json: encode_output_json::<M>,
        decode_json: decode_output_json::<M>,
        type_name: std::any::type_name::<M::Output>,
    }
}

// The functions below are compiled once per message type, so they do only what needs the
// type; format conversion and error wording live in non-generic code (`OutputCodec`,
// `MessageInfo::decode`). `match` rather than `map`/`map_err`: a closure in a generic
// function is one more function per type.

fn encode_output_json<M: crate::message::Request>(
    output: &(dyn std::any::Any + Send),
) -> Result<Vec<u8>, CodecError> {
    match output.downcast_ref::<M::Output>() {
        Some(output) => M::__encode_output_json(output),
        None => Err(wrong_output(std::any::type_name::<M::Output>())),
    }
}

#[cold]
fn wrong_output(type_name: &'static str) -> CodecError {
    CodecError::Encode {
        codec: "json",
        type_name,
        source: "an output of another type reached this message's codec".into(),
    }
}

fn decode_output_json<M: crate::message::Request>(
    bytes: &[u8],
) -> Result<Box<dyn std::any::Any + Send>, CodecError> {
    match M::__decode_output_json(bytes) {
        Ok(output) => Ok(Box::new(output)),
        Err(e) => Err(e),
    }
}

/// The output codec of an event: its handlers return `()`, encoded as `null`.
pub const EVENT_OUTPUT_JSON: OutputCodec = OutputCodec {
    encode_json: |_| Ok(b"null".to_vec()),
    decode_json: |_| Ok(Box::new(())),
    type_name: || "()",
};

#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event, so it cannot invalidate cached replies",
    label = "`invalidated_by(…)` names events",
    note = "a cached query is made stale by something that happened: name the `#[event]` that announces it"
)]
pub trait Invalidates: crate::message::Event {}
#[diagnostic::do_not_recommend]
impl<E: crate::message::Event> Invalidates for E {}

/// The info of an event named in `invalidated_by(…)`: only events can invalidate a cache.
pub fn event_info<E: Invalidates>() -> &'static MessageInfo {
    E::info()
}

/// `Duration::from_millis` for a rate's period in generated statics.
pub const fn rate(count: u32, period_ms: u64) -> Rate {
    Rate::new(count, Duration::from_millis(period_ms))
}

/// Decodes a JSON payload into `M`, type-erased (stored in `MessageInfo`, which converts
/// other formats to JSON first).
pub fn decode_wire<M: Message>(json: &[u8]) -> Result<Box<dyn AnyMessage>, CodecError> {
    match M::__decode_json(json) {
        Ok(msg) => Ok(Box::new(msg)),
        Err(e) => Err(e),
    }
}

// ---- wire capability: a readable error instead of serde's bound failure ----
//
// Generated `__encode_json`/`__decode_json` go through these traits rather than calling the
// codec with a `Serialize` bound directly, so a message without serde derives fails with our
// message, at the message's name.

#[diagnostic::on_unimplemented(
    message = "`{Self}` travels over the wire but does not implement `Serialize`",
    label = "not serializable",
    note = "derive it: `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "if the message never leaves the process, declare it `local`, e.g. `#[command(local)]`",
    note = "CATGA016 (wire_message_not_serde), see `cargo catga explain CATGA016`"
)]
pub trait WireSerialize {
    fn catga_encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;
}
#[diagnostic::do_not_recommend]
impl<T: serde::Serialize> WireSerialize for T {
    #[inline]
    fn catga_encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` travels over the wire but does not implement `Deserialize`",
    label = "not deserializable",
    note = "derive it: `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "if the message never leaves the process, declare it `local`, e.g. `#[command(local)]`",
    note = "CATGA016 (wire_message_not_serde), see `cargo catga explain CATGA016`"
)]
pub trait WireDeserialize: Sized {
    fn catga_decode<C: Codec>(codec: &C, bytes: &[u8]) -> Result<Self, CodecError>;
}
#[diagnostic::do_not_recommend]
impl<T: serde::de::DeserializeOwned> WireDeserialize for T {
    #[inline]
    fn catga_decode<C: Codec>(codec: &C, bytes: &[u8]) -> Result<Self, CodecError> {
        codec.decode(bytes)
    }
}

// ---- static apps: a second route so rustc never infers a message from a lone impl ----

/// A request no one can construct. Every static app routes it, so an app with a single route
/// still has two `StaticRoute` impls and sending an unlisted message reports the missing
/// route instead of a type mismatch against the one listed message.
#[derive(Debug)]
pub enum NoRoute {}

impl Message for NoRoute {
    type Output = ();
    const NAME: &'static str = "catga.no_route";
    const KIND: MessageKind = MessageKind::Command;
    fn info() -> &'static MessageInfo {
        static INFO: MessageInfo = MessageInfo::__new(
            "catga.no_route",
            MessageKind::Command,
            "catga_core::__private::NoRoute",
            file!(),
            line!(),
            false,
            MessagePolicy {
                timeout: None,
                max_attempts: None,
                idempotent: false,
                skip: Skip::NONE,
                rate_limit: None,
                max_in_flight: None,
                bulkhead: None,
                cache_ttl: None,
                invalidated_by: &[],
            },
            decode_wire::<NoRoute>,
            request_output_json::<NoRoute>(),
        );
        &INFO
    }
    fn __try_clone(&self) -> Option<Self> {
        match *self {}
    }
    fn __validate(&self) -> Result<(), ValidationErrors> {
        match *self {}
    }
    fn __idempotency_key(&self) -> Option<String> {
        match *self {}
    }
    fn __cache_key(&self) -> Option<String> {
        match *self {}
    }
    fn __decode_json(_: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::NotWire {
            name: "catga.no_route",
        })
    }
    fn __encode_json(&self) -> Result<Vec<u8>, CodecError> {
        match *self {}
    }
}

impl Bind for NoRoute {
    type __Role = RequestRole;
    fn __bind_owned<H: OwnedHandler<Self>>(states: &States) -> Result<Binding, MissingState> {
        bind_request::<Self, H>(states)
    }
}

impl crate::message::Request for NoRoute {
    fn __encode_output_json(_: &()) -> Result<Vec<u8>, CodecError> {
        Err(CodecError::NotWire {
            name: "catga.no_route",
        })
    }
    fn __decode_output_json(_: &[u8]) -> Result<(), CodecError> {
        Err(CodecError::NotWire {
            name: "catga.no_route",
        })
    }
}

// ---- handler return values ----

#[diagnostic::on_unimplemented(
    message = "a handler of `{M}` must return `Result<{M}::Output, E>`, not `{Self}`",
    label = "wrong return type for a handler of `{M}`",
    note = "the `Ok` type must be the output the message declares (`#[command(output = …)]`, `#[query(output = …)]`; `()` for a bare `#[command]` or an event)",
    note = "the error type must implement `std::error::Error + Send + Sync + 'static`, or be `anyhow::Error`, `eyre::Report`, `Box<dyn std::error::Error + Send + Sync>` or `String`",
    note = "CATGA004 (handler_return_not_result) / CATGA010 (handler_output_mismatch), see `cargo catga explain CATGA004`"
)]
pub trait HandlerReturn<M> {
    type Ok;
    /// Anything that becomes a boxed error: every `std::error::Error + Send + Sync + 'static`,
    /// and `anyhow::Error`, `eyre::Report`, `Box<dyn Error + Send + Sync>`, `String`, `&str`.
    type Err: Into<crate::error::BoxError> + 'static;
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

#[diagnostic::do_not_recommend]
impl<M: Message, E: Into<crate::error::BoxError> + 'static> HandlerReturn<M>
    for Result<M::Output, E>
{
    type Ok = M::Output;
    type Err = E;
    #[inline]
    fn into_result(self) -> Result<M::Output, E> {
        self
    }
}

#[diagnostic::on_unimplemented(
    message = "`{Self}` is an event taken by value, but it is not `Clone`",
    label = "an event handler that takes the event by value needs `Clone`",
    note = "every handler of an event sees the same event: take it as `&{Self}`, or derive `Clone`",
    note = "CATGA005 (event_by_value_not_clone), see `cargo catga explain CATGA005`"
)]
pub trait ByValue<Role> {}
#[diagnostic::do_not_recommend]
impl<T: Message> ByValue<RequestRole> for T {}
#[diagnostic::do_not_recommend]
impl<T: Message + Clone> ByValue<EventRole> for T {}

/// Compile-time check for a handler that takes its message by value: fine for requests, needs
/// `Clone` for events.
pub const fn assert_by_value<M: Bind + ByValue<<M as Bind>::__Role>>() {}

#[diagnostic::on_unimplemented(
    message = "`{Self}` is taken by reference, so this is an event handler, but `{Self}` is not an event",
    label = "commands and queries are taken by value",
    note = "take a command or query by value (`cmd: {Self}`); only events can be borrowed (`event: &MyEvent`)",
    note = "if `{Self}` is state, put the message first: state parameters come after it",
    note = "CATGA019 (request_by_reference), see `cargo catga explain CATGA019`"
)]
pub trait EventByRef: Event {}
#[diagnostic::do_not_recommend]
impl<T: Event> EventByRef for T {}

/// Compile-time check for a handler that borrows its message.
pub const fn assert_by_ref<E: EventByRef>() {}

// ---- CQRS discipline ----

#[diagnostic::on_unimplemented(
    message = "`{Self}` is a query, but its handler publishes events",
    label = "a query handler cannot publish",
    note = "queries are safe to repeat, cache and run anywhere; make `{Self}` a `#[command]` if handling it changes something",
    note = "CATGA050 (query_side_effects), see `cargo catga explain CATGA050`"
)]
pub trait SideEffectsAllowed {}

/// Compile-time check emitted at each `ctx.publish(…)` of a handler: its message is a command
/// or an event (the message attributes implement the trait), not a query.
pub const fn assert_side_effects_allowed<M: SideEffectsAllowed>() {}
