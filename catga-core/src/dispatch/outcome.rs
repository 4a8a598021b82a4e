//! A publish's outcome: the one place where handler failures become the publish's result.
//!
//! Every publish path (the typed in-process path, the type-erased path of queued and
//! transported events, and the static app's generated code) notes each handler's result here
//! and finishes with [`Outcome::finish`], so a publish reads the same whichever path ran it.

use crate::error::{Error, ErrorKind, HandlerFailure};

/// The results of one publish's handlers, as they finish.
///
/// Starts empty without allocating; only a failure allocates.
#[derive(Debug, Default)]
pub struct Outcome {
    failures: Vec<HandlerFailure>,
}

impl Outcome {
    /// An outcome with no handler noted yet.
    #[inline]
    pub const fn new() -> Self {
        Outcome {
            failures: Vec::new(),
        }
    }

    /// Notes one handler's result.
    #[inline]
    pub fn note(&mut self, handler: &'static str, result: Result<(), Error>) {
        if let Err(error) = result {
            self.failures.push(HandlerFailure { handler, error });
        }
    }

    /// The failures noted so far, in the order they were noted.
    pub(crate) fn failures(&self) -> &[HandlerFailure] {
        &self.failures
    }

    /// `Ok` when no handler failed, else [`ErrorKind::Publish`] with every failure under the
    /// event's name, in the order they were noted.
    #[inline]
    pub fn finish(self, event: &'static str) -> Result<(), Error> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(ErrorKind::Publish {
                event,
                failures: self.failures,
            }
            .into())
        }
    }
}
