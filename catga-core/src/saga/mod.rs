//! Sagas: a business process of several commands, each undone by a compensating command if
//! a later one fails.
//!
//! A [`Saga`] is defined once with [`Saga::builder`]: its ordered steps, each a command built
//! from the saga's data and (optionally) the command that undoes it, built from the same data
//! and the step's reply. [`build`](SagaBuilder::build) checks the definition: two steps with
//! one name, or a step sending a `local` message, are refused ([`SagaBuildError`]).
//!
//! [`Saga::run`] sends the commands in order. When a step fails, the steps that completed are
//! compensated in reverse order. A compensation that fails is retried with backoff; if it
//! still fails it is kept in the application's dead-letter store
//! ([`Catga::dead_letters`](crate::Catga::dead_letters), or the one given with
//! [`SagaBuilder::dead_letters`]) with its command, once, so an operator can fix and replay it,
//! and the other compensations still run: nothing is dropped.
//!
//! * **Steps are identified by position.** The state records each completed step's index
//!   (its name is kept for people reading it), and compensation finds the step by index.
//! * **Steps go where `send` would send them**: to the handler in this process if it has
//!   one, else through the application's transport as a request, through the application's
//!   behaviours either way. The handlers of a saga's steps may live in other services. The
//!   step's deadline ([`SagaBuilder::step_timeout`]), else the application's
//!   `request_timeout` for a remote handler, bounds each command.
//! * **A step's command is recognisably the same message however often it is sent.** Its
//!   message id is derived from the run's id, the step's position and the direction
//!   (forward or compensating) as a name-based UUID
//!   ([`SagaState::forward_message_id`], [`SagaState::compensation_message_id`]), so it is the
//!   same on a `Retry` layer's attempts, on the saga's own compensation retries, on a resume
//!   after a crash and when a dead-lettered compensation is replayed. With an
//!   [`Idempotency`](crate::behavior::Idempotency) layer where the command is handled, a
//!   command whose reply was lost runs once: a repeat gets the first reply.
//! * Every command carries the run's id as its correlation id and the `catga-saga` /
//!   `catga-saga-step` headers (the saga's and the step's names), across transports too.
//! * The saga settles its commands' failures itself, so a `DeadLetter` layer in the
//!   application keeps none of them: a failed step is compensated, and a compensation that
//!   failed for good is kept once.
//!
//! Progress is a plain, serialisable [`SagaState`], updated as the saga goes. To survive a
//! crash, run the saga with [`Saga::run_stored`]: the instance (state and data) is saved in a
//! [`SagaStore`](crate::store::saga::SagaStore) before the first command and after every
//! change, and [`Saga::recover`], called in a loop by any process, finds the instances nobody
//! saved for a grace period and finishes them: a running one with its next step, a
//! compensating one with its next compensation. The one step that was being sent when the
//! process died is sent again with the same message id; of two processes resuming one
//! instance, the store's version lets exactly one go on. ([`Saga::run_observed`] sees every
//! change too, synchronously, for a caller that keeps the state elsewhere.)
//!
//! A forward step that fails *in doubt* (a timeout, a reply lost on the way back) may have
//! taken effect: it is not compensated (its compensation is built from its reply, which never
//! came), only the steps before it are. Declare such a command `#[command(idempotent)]` and
//! handle it behind `Idempotency`, so a `Retry` layer asks again and gets the reply.
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
//! let checkout = Saga::builder("checkout")
//!     .step("reserve", |c: &Checkout| Reserve { qty: c.qty }, |_, id| Release { reservation: id })
//!     .last_step("charge", |c: &Checkout| Charge { cents: c.cents })
//!     .build()?;
//!
//! let app = Catga::builder().build()?;
//! let mut state = checkout.start();
//! let result = checkout.run(&app, &Checkout { qty: 1, cents: 500 }, &mut state).await;
//! assert!(result.is_err());                          // the charge was declined …
//! assert_eq!(state.status, SagaStatus::Compensated); // … and the reservation released
//! assert_eq!(state.failure.as_ref().and_then(|f| f.index), Some(1));
//! # Ok(())
//! # }
//! ```

mod builder;
mod compensate;
mod progress;
mod recover;
mod run;
mod step;
mod stored;

use std::sync::Arc;
use std::time::Duration;

pub use builder::{SagaBuildError, SagaBuilder};
pub use progress::{CompletedStep, SagaState, SagaStatus, StepFailure};
pub use recover::{RecoverError, Recovery};
pub use run::SagaError;
pub use stored::{Resumed, StoredSagaError};

use crate::store::dead_letter::DynDeadLetterStore;
use step::ErasedStep;

/// A saga definition: its steps, in order. See the [module docs](self).
pub struct Saga<D> {
    name: &'static str,
    steps: Vec<Box<dyn ErasedStep<D>>>,
    compensation_attempts: u32,
    compensation_delay: Duration,
    step_timeout: Option<Duration>,
    /// `None`: the application's dead-letter store.
    dead_letters: Option<Arc<dyn DynDeadLetterStore>>,
}

impl<D> std::fmt::Debug for Saga<D> {
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

impl<D: Sync + 'static> Saga<D> {
    /// Starts defining a saga named `name`: add its steps in order, then
    /// [`build`](SagaBuilder::build) it.
    pub fn builder(name: &'static str) -> SagaBuilder<D> {
        SagaBuilder::new(name)
    }

    /// The store compensations that failed for good go to, when one was given with
    /// [`SagaBuilder::dead_letters`]; `None` means the application's
    /// ([`Catga::dead_letters`](crate::Catga::dead_letters)).
    pub fn dead_letters(&self) -> Option<&Arc<dyn DynDeadLetterStore>> {
        self.dead_letters.as_ref()
    }

    /// The saga's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The steps' names, in order (a step's position is its identity).
    pub fn steps(&self) -> impl ExactSizeIterator<Item = &'static str> + '_ {
        self.steps.iter().map(|s| s.name())
    }

    /// A fresh state for a new run.
    pub fn start(&self) -> SagaState {
        SagaState::new(self.name)
    }
}
