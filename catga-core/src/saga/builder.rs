//! Defining a saga: its steps in order, checked when it is built.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::Saga;
use super::step::Step;
use crate::message::{MessageInfo, Request};
use crate::store::dead_letter::DeadLetterStore;

/// Why a saga definition was refused by [`SagaBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SagaBuildError {
    /// Two steps share a name. Steps are identified by position, but a name is how people
    /// (and the `catga-saga-step` header) tell them apart.
    #[error(
        "saga `{saga}`: the steps at positions {first} and {second} are both named `{step}`; give each step a name of its own"
    )]
    DuplicateStep {
        /// The saga.
        saga: &'static str,
        /// The shared name.
        step: &'static str,
        /// The first step's position, from 0.
        first: usize,
        /// The other step's position.
        second: usize,
    },
    /// A step sends a `local` message, which has no wire form: a saga keeps each step's reply
    /// in its state and a compensation that failed for good in a dead letter, both encoded.
    #[error(
        "saga `{saga}`: step `{step}` sends `{message}`, a `local` message; a saga stores its steps' replies and commands, so declare `{message}` without `local`"
    )]
    LocalMessage {
        /// The saga.
        saga: &'static str,
        /// The step.
        step: &'static str,
        /// The message's wire name.
        message: &'static str,
    },
}

/// A saga being defined: add its steps in order, then [`build`](Self::build) it. Made by
/// [`Saga::builder`].
pub struct SagaBuilder<D> {
    saga: Saga<D>,
}

impl<D> std::fmt::Debug for SagaBuilder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SagaBuilder").field(&self.saga).finish()
    }
}

impl<D: Sync + 'static> SagaBuilder<D> {
    pub(super) fn new(name: &'static str) -> Self {
        SagaBuilder {
            saga: Saga {
                name,
                steps: Vec::new(),
                compensation_attempts: 5,
                compensation_delay: Duration::from_millis(100),
                step_timeout: None,
                dead_letters: None,
            },
        }
    }

    /// Adds a step: the command `forward` builds, undone by the command `undo` builds from
    /// the data and the forward command's reply.
    pub fn step<C, K>(
        mut self,
        name: &'static str,
        forward: impl Fn(&D) -> C + Send + Sync + 'static,
        undo: impl Fn(&D, C::Output) -> K + Send + Sync + 'static,
    ) -> Self
    where
        C: Request,
        K: Request,
    {
        self.saga.steps.push(Box::new(Step {
            name,
            forward,
            undo: Some(undo),
            _commands: PhantomData::<fn() -> (C, K)>,
        }));
        self
    }

    /// Adds a step with nothing to undo (typically the last, the one that commits).
    pub fn last_step<C: Request>(
        mut self,
        name: &'static str,
        forward: impl Fn(&D) -> C + Send + Sync + 'static,
    ) -> Self {
        self.saga.steps.push(Box::new(Step {
            name,
            forward,
            undo: None::<fn(&D, C::Output) -> crate::__private::NoRoute>,
            _commands: PhantomData::<fn() -> (C, crate::__private::NoRoute)>,
        }));
        self
    }

    /// How often a failing compensation is tried before it is dead-lettered (default 5), and
    /// the first delay between tries (doubling, at most a minute; default 100 ms).
    pub fn compensation_retries(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.saga.compensation_attempts = attempts.max(1);
        self.saga.compensation_delay = first_delay;
        self
    }

    /// The deadline of every command the saga sends, forward or compensating, counted from
    /// each attempt's start. Without it a command handled in this process has none (beyond
    /// the application's behaviours, e.g. a `Timeout` layer) and one handled elsewhere waits
    /// the application's [`request_timeout`](crate::CatgaBuilder::request_timeout), as for
    /// [`send`](crate::Catga::send).
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.saga.step_timeout = Some(timeout);
        self
    }

    /// Keeps compensations that failed for good in `store` instead of the application's
    /// dead-letter store ([`Catga::dead_letters`](crate::Catga::dead_letters)).
    pub fn dead_letters<S: DeadLetterStore>(mut self, store: S) -> Self {
        self.saga.dead_letters = Some(Arc::new(store));
        self
    }

    /// The saga, once its definition is sound.
    ///
    /// # Errors
    /// [`SagaBuildError::DuplicateStep`] when two steps share a name (naming both
    /// positions); [`SagaBuildError::LocalMessage`] when a step sends a `local` message.
    pub fn build(self) -> Result<Saga<D>, SagaBuildError> {
        let saga = self.saga;
        for (second, step) in saga.steps.iter().enumerate() {
            if let Some(first) = saga.steps[..second]
                .iter()
                .position(|earlier| earlier.name() == step.name())
            {
                return Err(SagaBuildError::DuplicateStep {
                    saga: saga.name,
                    step: step.name(),
                    first,
                    second,
                });
            }
            let local = std::iter::once(step.forward_info())
                .chain(step.compensation_info())
                .find(|info: &&'static MessageInfo| !info.is_wire());
            if let Some(info) = local {
                return Err(SagaBuildError::LocalMessage {
                    saga: saga.name,
                    step: step.name(),
                    message: info.name(),
                });
            }
        }
        Ok(saga)
    }
}
