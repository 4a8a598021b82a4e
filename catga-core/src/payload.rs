//! Payloads: the message as a behaviour sees it.
//!
//! Behaviours are generic over [`Payload`], so one behaviour serves every message type. A
//! payload is the message itself for `send`, a reference to the event for each handler of a
//! `publish`, or a type-erased message on the bytes path and for events queued with
//! [`Context::publish`](crate::Context::publish). Whatever the form, it tells the behaviour the
//! message's [`MessageInfo`], can be cloned for a retry, and can validate itself.

use std::any::Any;

use crate::codec::{CodecError, WireFormat};
use crate::message::{AnyMessage, Message, MessageInfo, Request};
use crate::validate::ValidationErrors;

mod sealed {
    pub trait Sealed {}
}

/// The message flowing through the behaviour stack. Implemented by catga only.
///
/// A *typed* message, not bytes: where catga means encoded bytes (a transport's body, a
/// dead letter's stored copy) it says "payload bytes" and uses `Vec<u8>`/`&[u8]`; this trait
/// is what a [`Behavior`](crate::Behavior) is generic over, so one behaviour serves every
/// message type.
pub trait Payload: sealed::Sealed + Send + Sync + Sized {
    /// What a successful dispatch returns: the request's output, or `()` for an event handler.
    type Output: Send;

    /// Static facts about the message's type (name, kind, per-message policy).
    fn info(&self) -> &'static MessageInfo;

    /// A copy for another attempt; `None` if the message type is not `Clone`.
    fn try_clone(&self) -> Option<Self>;

    /// Runs the message's [`Validate`](crate::Validate) implementation, if it has one.
    fn validate(&self) -> Result<(), ValidationErrors>;

    /// The message itself, type-erased; downcast with `as_any()`.
    fn message(&self) -> &dyn AnyMessage;

    /// For one handler of an event, that handler's path; `None` for a request (its handler is
    /// the message's only one).
    fn handler(&self) -> Option<&'static str> {
        None
    }

    /// Encodes a reply of `info`'s message as JSON (to store it: idempotency, caching). An
    /// associated function, so it can run after the message was moved into the handler.
    fn encode_output(
        info: &'static MessageInfo,
        output: &Self::Output,
    ) -> Result<Vec<u8>, CodecError>;

    /// Decodes a reply stored by [`encode_output`](Payload::encode_output).
    fn decode_output(info: &'static MessageInfo, bytes: &[u8]) -> Result<Self::Output, CodecError>;
}

impl<M: Request> sealed::Sealed for M {}

impl<M: Request> Payload for M {
    type Output = M::Output;

    #[inline]
    fn info(&self) -> &'static MessageInfo {
        M::info()
    }
    fn try_clone(&self) -> Option<Self> {
        self.__try_clone()
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.__validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        self
    }
    fn encode_output(_: &'static MessageInfo, output: &M::Output) -> Result<Vec<u8>, CodecError> {
        M::__encode_output_json(output)
    }
    fn decode_output(_: &'static MessageInfo, bytes: &[u8]) -> Result<M::Output, CodecError> {
        M::__decode_output_json(bytes)
    }
}

/// An event, borrowed by one of its handlers.
#[derive(Debug)]
pub struct EventRef<'a, E> {
    pub(crate) event: &'a E,
    pub(crate) handler: &'static str,
}

impl<'a, E> EventRef<'a, E> {
    pub(crate) fn new(event: &'a E, handler: &'static str) -> Self {
        EventRef { event, handler }
    }
}

impl<E> Clone for EventRef<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for EventRef<'_, E> {}

impl<E: Message> sealed::Sealed for EventRef<'_, E> {}

impl<E: Message> Payload for EventRef<'_, E> {
    type Output = ();

    #[inline]
    fn info(&self) -> &'static MessageInfo {
        E::info()
    }
    fn try_clone(&self) -> Option<Self> {
        Some(*self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.event.__validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        self.event
    }
    fn handler(&self) -> Option<&'static str> {
        Some(self.handler)
    }
    fn encode_output(_: &'static MessageInfo, _: &()) -> Result<Vec<u8>, CodecError> {
        Ok(b"null".to_vec())
    }
    fn decode_output(_: &'static MessageInfo, _: &[u8]) -> Result<(), CodecError> {
        Ok(())
    }
}

/// A request of a type known only at run time (the bytes path). Its output is type-erased too.
#[derive(Debug)]
pub struct DynRequest(pub(crate) Box<dyn AnyMessage>);

impl sealed::Sealed for DynRequest {}

impl Payload for DynRequest {
    type Output = Box<dyn Any + Send>;

    fn info(&self) -> &'static MessageInfo {
        self.0.info()
    }
    fn try_clone(&self) -> Option<Self> {
        self.0.clone_boxed().map(DynRequest)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.0.validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        &*self.0
    }
    fn encode_output(
        info: &'static MessageInfo,
        output: &Box<dyn Any + Send>,
    ) -> Result<Vec<u8>, CodecError> {
        info.output_codec().encode(WireFormat::Json, &**output)
    }
    fn decode_output(
        info: &'static MessageInfo,
        bytes: &[u8],
    ) -> Result<Box<dyn Any + Send>, CodecError> {
        info.output_codec().decode(WireFormat::Json, bytes)
    }
}

/// An event of a type known only at run time, borrowed by one of its handlers.
#[derive(Clone, Copy, Debug)]
pub struct DynEventRef<'a> {
    pub(crate) event: &'a dyn AnyMessage,
    pub(crate) handler: &'static str,
}

impl sealed::Sealed for DynEventRef<'_> {}

impl Payload for DynEventRef<'_> {
    type Output = ();

    fn info(&self) -> &'static MessageInfo {
        self.event.info()
    }
    fn try_clone(&self) -> Option<Self> {
        Some(*self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.event.validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        self.event
    }
    fn handler(&self) -> Option<&'static str> {
        Some(self.handler)
    }
    fn encode_output(_: &'static MessageInfo, _: &()) -> Result<Vec<u8>, CodecError> {
        Ok(b"null".to_vec())
    }
    fn decode_output(_: &'static MessageInfo, _: &[u8]) -> Result<(), CodecError> {
        Ok(())
    }
}
