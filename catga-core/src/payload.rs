//! Payloads: the message as a behaviour sees it.
//!
//! Behaviours are generic over [`Payload`], so one behaviour serves every message type. A
//! payload is the message itself for `send`, a reference to the event for each handler of a
//! `publish`, or a type-erased message on the bytes path and for events queued with
//! [`Context::publish`](crate::Context::publish). Whatever the form, it tells the behaviour the
//! message's [`MessageInfo`], can be cloned for a retry, and can validate itself.

use std::any::Any;

use crate::message::{Message, MessageInfo, Request};
use crate::validation::ValidationErrors;

/// Any message, type-erased. Every message type implements it.
pub trait AnyMessage: Any + Send + Sync {
    /// Static facts about the message's type.
    fn info(&self) -> &'static MessageInfo;
    /// A copy, if the message type is `Clone`.
    fn clone_boxed(&self) -> Option<Box<dyn AnyMessage>>;
    /// Runs the message's [`Validate`](crate::Validate) implementation, if it has one.
    fn validate(&self) -> Result<(), ValidationErrors>;
    /// For downcasting to the concrete message type.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting an owned message to its concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<M: Message> AnyMessage for M {
    fn info(&self) -> &'static MessageInfo {
        M::info()
    }
    fn clone_boxed(&self) -> Option<Box<dyn AnyMessage>> {
        self.__try_clone()
            .map(|m| Box::new(m) as Box<dyn AnyMessage>)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.__validate()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

impl std::fmt::Debug for dyn AnyMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnyMessage({})", self.info().name())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The message flowing through the behaviour stack. Implemented by catga only.
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
}

/// An event, borrowed by one of its handlers.
#[derive(Debug)]
pub struct EventRef<'a, E>(pub(crate) &'a E);

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
        self.0.__validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        self.0
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
}

/// An event of a type known only at run time, borrowed by one of its handlers.
#[derive(Clone, Copy, Debug)]
pub struct DynEventRef<'a>(pub(crate) &'a dyn AnyMessage);

impl sealed::Sealed for DynEventRef<'_> {}

impl Payload for DynEventRef<'_> {
    type Output = ();

    fn info(&self) -> &'static MessageInfo {
        self.0.info()
    }
    fn try_clone(&self) -> Option<Self> {
        Some(*self)
    }
    fn validate(&self) -> Result<(), ValidationErrors> {
        self.0.validate()
    }
    fn message(&self) -> &dyn AnyMessage {
        self.0
    }
}
