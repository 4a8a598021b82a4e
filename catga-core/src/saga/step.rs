//! A saga step: a command built from the saga's data, and the command that undoes it.

use std::any::Any;
use std::marker::PhantomData;

use crate::codec::CodecError;
use crate::error::{Error, ErrorKind};
use crate::message::AnyMessage;
use crate::message::{MessageInfo, Request};

/// A step with its command types erased, so steps of different commands share one list.
/// The saga sends what it builds as `send` would (`Catga::send_dyn`); the step, which knows
/// its types, turns the reply into the JSON the state keeps and back.
pub(crate) trait ErasedStep<D>: Send + Sync {
    fn name(&self) -> &'static str;
    /// The forward command's type.
    fn forward_info(&self) -> &'static MessageInfo;
    /// The compensating command's type, if the step has one.
    fn compensation_info(&self) -> Option<&'static MessageInfo>;
    /// The forward command.
    fn forward(&self, data: &D) -> Box<dyn AnyMessage>;
    /// The forward command's reply as the state keeps it (JSON).
    fn keep_reply(&self, reply: Box<dyn Any + Send>) -> Result<Vec<u8>, Error>;
    /// The compensating command, given the forward command's kept reply; `None` if the step
    /// has nothing to undo.
    fn compensation(
        &self,
        data: &D,
        output: &[u8],
    ) -> Result<Option<Box<dyn AnyMessage>>, CodecError>;
}

/// A step whose forward command is `C`, built by `F`, undone by the command `K` that `U`
/// builds from the saga's data and `C`'s reply.
pub(crate) struct Step<C, K, F, U> {
    pub(crate) name: &'static str,
    pub(crate) forward: F,
    pub(crate) undo: Option<U>,
    pub(crate) _commands: PhantomData<fn() -> (C, K)>,
}

impl<D, C, F, K, U> ErasedStep<D> for Step<C, K, F, U>
where
    C: Request,
    K: Request,
    F: Fn(&D) -> C + Send + Sync,
    U: Fn(&D, C::Output) -> K + Send + Sync,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn forward_info(&self) -> &'static MessageInfo {
        C::info()
    }

    fn compensation_info(&self) -> Option<&'static MessageInfo> {
        self.undo.as_ref().map(|_| K::info())
    }

    fn forward(&self, data: &D) -> Box<dyn AnyMessage> {
        Box::new((self.forward)(data))
    }

    fn keep_reply(&self, reply: Box<dyn Any + Send>) -> Result<Vec<u8>, Error> {
        // The reply comes from `C`'s own handler or output codec: another type would be a
        // bug in catga, reported rather than panicking.
        let output = reply.downcast::<C::Output>().map_err(|_| {
            Error::from(ErrorKind::Internal {
                message: C::NAME,
                what: "a saga step's reply is not of its command's output type",
            })
        })?;
        C::__encode_output_json(&output).map_err(|source| {
            ErrorKind::Codec {
                message: C::NAME.to_string(),
                source,
            }
            .into()
        })
    }

    fn compensation(
        &self,
        data: &D,
        output: &[u8],
    ) -> Result<Option<Box<dyn AnyMessage>>, CodecError> {
        let Some(undo) = &self.undo else {
            return Ok(None);
        };
        let output = C::__decode_output_json(output)?;
        Ok(Some(Box::new(undo(data, output))))
    }
}
