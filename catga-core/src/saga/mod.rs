//! Sagas: a business process of several commands, each undone by a compensating command if
//! a later one fails.
//!
//! A [`Saga`] is defined once: its ordered steps, each a command built from the saga's data
//! and (optionally) the command that undoes it, built from the same data and the step's reply.
//! [`Saga::run`] sends the commands in order through the application (the same pipeline and
//! behaviours as any dispatch). When a step fails, the steps that completed are compensated in
//! reverse order. A compensation that fails is retried with backoff; if it still fails it is
//! dead-lettered with its command, so an operator can fix and replay it: nothing is dropped.
//!
//! Progress is a plain, serialisable [`SagaState`], updated as the saga goes: persist it (the
//! `observe` callback sees every change) and pass it back to `run` to resume after a crash.
//!
//! ```rust,standalone_crate
//! use catga_core::prelude::*;
//! use catga_core::saga::{Saga, SagaState, SagaStatus};
//!
//! #[command(output = u64)]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Reserve { pub qty: u32 }
//! #[command]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Release { pub reservation: u64 }
//! #[command]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Charge { pub cents: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("card declined")]
//! pub struct Declined;
//!
//! #[handler] async fn reserve(cmd: Reserve) -> Result<u64, Declined> { Ok(42) }
//! #[handler] async fn release(cmd: Release) -> Result<(), Declined> { Ok(()) }
//! #[handler] async fn charge(cmd: Charge) -> Result<(), Declined> { Err(Declined) }
//!
//! struct Checkout { qty: u32, cents: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let checkout = Saga::new("checkout")
//!     .step("reserve", |c: &Checkout| Reserve { qty: c.qty }, |_, id| Release { reservation: id })
//!     .last_step("charge", |c: &Checkout| Charge { cents: c.cents });
//!
//! let app = Catga::builder().build()?;
//! let mut state = checkout.start();
//! let result = checkout.run(&app, &Checkout { qty: 1, cents: 500 }, &mut state).await;
//! assert!(result.is_err());                          // the charge was declined …
//! assert_eq!(state.status, SagaStatus::Compensated); // … and the reservation released
//! # Ok(())
//! # }
//! ```

mod run;
mod state;
mod step;

use std::marker::PhantomData;
use std::time::Duration;

pub use run::SagaError;
pub use state::{CompletedStep, SagaState, SagaStatus, StepFailure};

use crate::message::Request;
use crate::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use step::{ErasedStep, Step};

/// A saga definition: its steps, in order. See the [module docs](self).
pub struct Saga<D, S = MemoryDeadLetterStore> {
    name: &'static str,
    steps: Vec<Box<dyn ErasedStep<D>>>,
    compensation_attempts: u32,
    compensation_delay: Duration,
    dead_letters: S,
}

impl<D, S> std::fmt::Debug for Saga<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saga")
            .field("name", &self.name)
            .field(
                "steps",
                &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<D: Sync + 'static> Saga<D, MemoryDeadLetterStore> {
    /// An empty saga named `name`; failed compensations are dead-lettered in memory (see
    /// [`Saga::dead_letters_into`] for another store).
    pub fn new(name: &'static str) -> Self {
        Saga {
            name,
            steps: Vec::new(),
            compensation_attempts: 5,
            compensation_delay: Duration::from_millis(100),
            dead_letters: MemoryDeadLetterStore::new(),
        }
    }
}

impl<D: Sync + 'static, S: DeadLetterStore> Saga<D, S> {
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
        self.steps.push(Box::new(Step {
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
        self.steps.push(Box::new(Step {
            name,
            forward,
            undo: None::<fn(&D, C::Output) -> crate::__private::NoRoute>,
            _commands: PhantomData::<fn() -> (C, crate::__private::NoRoute)>,
        }));
        self
    }

    /// How often a failing compensation is tried before it is dead-lettered (default 5), and
    /// the first delay between tries (doubling; default 100 ms).
    pub fn compensation_retries(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.compensation_attempts = attempts.max(1);
        self.compensation_delay = first_delay;
        self
    }

    /// Dead-letters failed compensations into `store`.
    pub fn dead_letters_into<T: DeadLetterStore>(self, store: T) -> Saga<D, T> {
        Saga {
            name: self.name,
            steps: self.steps,
            compensation_attempts: self.compensation_attempts,
            compensation_delay: self.compensation_delay,
            dead_letters: store,
        }
    }

    /// The store failed compensations are dead-lettered into.
    pub fn dead_letters(&self) -> &S {
        &self.dead_letters
    }

    /// The saga's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// A fresh state for a new run.
    pub fn start(&self) -> SagaState {
        SagaState::new(self.name)
    }
}
