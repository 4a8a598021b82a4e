//! A saga step: a command built from the saga's data, and the command that undoes it.

use std::marker::PhantomData;

use crate::codec::{CodecError, Json};
use crate::message::Request;

/// A command ready to dispatch: its wire name and JSON payload.
pub(crate) type Wire = (&'static str, Vec<u8>);

/// A step with its command types erased, so steps of different commands share one list.
pub(crate) trait ErasedStep<D>: Send + Sync {
    fn name(&self) -> &'static str;
    /// The forward command.
    fn forward(&self, data: &D) -> Result<Wire, CodecError>;
    /// The compensating command, given the forward command's reply; `None` if the step has
    /// nothing to undo.
    fn compensation(&self, data: &D, output: &[u8]) -> Result<Option<Wire>, CodecError>;
}

/// A step whose forward command is `C`, built by `F`, undone by the command `K` that `U`
/// builds from the saga's data and `C`'s reply.
pub(crate) struct Step<C, K, F, U> {
    pub(crate) name: &'static str,
    pub(crate) forward: F,
    pub(crate) undo: Option<U>,
    pub(crate) _commands: PhantomData<fn() -> (C, K)>,
}

fn wire<M: Request>(msg: &M) -> Result<Wire, CodecError> {
    Ok((M::NAME, msg.__encode(&Json)?))
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

    fn forward(&self, data: &D) -> Result<Wire, CodecError> {
        wire(&(self.forward)(data))
    }

    fn compensation(&self, data: &D, output: &[u8]) -> Result<Option<Wire>, CodecError> {
        let Some(undo) = &self.undo else {
            return Ok(None);
        };
        let output = C::__decode_output(&Json, output)?;
        wire(&undo(data, output)).map(Some)
    }
}
