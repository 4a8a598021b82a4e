//! Running a saga: forward steps in order, then, on failure, compensations in reverse.

use uuid::Uuid;

use super::Saga;
use super::progress::{CompletedStep, SagaState, SagaStatus, StepFailure};
use crate::context::Context;
use crate::envelope::header;
use crate::error::Error;
use crate::mediator::Catga;
use crate::pipeline::Layer;

/// Why a saga did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SagaError {
    /// A step failed; every completed step was compensated.
    #[error("saga `{saga}` failed at step `{}` and was compensated: {}", failure.step, failure.error)]
    Compensated {
        /// The saga.
        saga: &'static str,
        /// The step that failed, and why.
        failure: StepFailure,
        /// The step's error, when this run saw it (a resumed saga has only the record).
        #[source]
        source: Option<Error>,
    },
    /// A step failed and some compensations failed too; they were dead-lettered.
    #[error("saga `{saga}` failed at step `{}` and {failed} compensation(s) failed and were dead-lettered: {}", failure.step, failure.error)]
    CompensationFailed {
        /// The saga.
        saga: &'static str,
        /// The step that failed, and why.
        failure: StepFailure,
        /// How many compensations failed.
        failed: usize,
        /// The step's error, when this run saw it.
        #[source]
        source: Option<Error>,
    },
    /// The state passed to `run` belongs to another saga, or is further on than this one
    /// has steps. Nothing was sent.
    #[error("a state of saga `{found}` at step {next_step} cannot be run by saga `{saga}`")]
    WrongState {
        /// This saga.
        saga: &'static str,
        /// The state's saga.
        found: String,
        /// The state's next step.
        next_step: usize,
    },
    /// The state records a completed step at a position this saga has no step at (the
    /// definition lost steps since the state was stored). Nothing was sent.
    #[error(
        "saga `{saga}` has {steps} step(s), but its state records step `{step}` as completed at position {index}"
    )]
    UnknownStep {
        /// This saga.
        saga: &'static str,
        /// The name the state records.
        step: String,
        /// The position the state records.
        index: usize,
        /// How many steps this saga has.
        steps: usize,
    },
}

/// The record of a failure of step `index`.
pub(super) fn failure(
    step: &str,
    index: usize,
    error: &Error,
    dead_letter: Option<Uuid>,
) -> StepFailure {
    StepFailure {
        step: step.to_string(),
        index: Some(index),
        code: error.code().to_string(),
        error: error.to_string(),
        dead_letter,
    }
}

impl<D: Sync + 'static> Saga<D> {
    /// Runs (or resumes) the saga over `data`, updating `state` as it goes.
    ///
    /// Each command goes where [`Catga::send`] would send it (a handler here, else the
    /// transport), with a message id derived from the run, the step and the direction (see
    /// the [module docs](super)), the run's id as correlation id, and the `catga-saga` /
    /// `catga-saga-step` headers. Returns `Ok(())` once every step succeeded.
    ///
    /// # Errors
    /// [`SagaError::Compensated`] when a step failed and the completed ones were undone;
    /// [`SagaError::CompensationFailed`] when some could not be (they are dead-lettered, and
    /// listed in `state.compensation_failures`); [`SagaError::WrongState`] for a state of
    /// another saga and [`SagaError::UnknownStep`] for one recording a step this saga does
    /// not have (nothing is sent for either).
    pub async fn run<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
    ) -> Result<(), SagaError> {
        self.run_observed(app, data, state, |_| {}).await
    }

    /// [`run`](Self::run), calling `observe` after every change of `state` (to persist it).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_observed<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
        mut observe: impl FnMut(&SagaState),
    ) -> Result<(), SagaError> {
        self.check(state)?;
        let mut first_error = None;
        while self.advance(app, data, state, &mut first_error).await {
            observe(state);
        }
        self.outcome(state, first_error)
    }

    /// Makes the next change of `state`: sends the next forward step, compensates the last
    /// completed step, or settles the status once there is nothing left to send. Returns
    /// `false`, changing nothing, once the saga is finished.
    ///
    /// One change per call is what lets a caller persist every change before the next
    /// command goes out (`run_observed` calls its callback, `run_stored` awaits a save). A
    /// forward step's error is kept in `first_error` for the outcome.
    pub(super) async fn advance<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
        first_error: &mut Option<Error>,
    ) -> bool {
        match state.status {
            SagaStatus::Running => match self.steps.get(state.next_step) {
                Some(step) => {
                    let index = state.next_step;
                    let ctx = self.context(state, index, state.forward_message_id(index));
                    let sent = app.send_dyn(step.forward(data), ctx).await;
                    match sent.and_then(|reply| step.keep_reply(reply)) {
                        Ok(output) => {
                            state.completed.push(CompletedStep {
                                index,
                                step: step.name().to_string(),
                                output,
                            });
                            state.next_step += 1;
                        }
                        Err(error) => {
                            if error.is_in_doubt() {
                                tracing::error!(target: "catga", saga = self.name, step = step.name(), index,
                                    error = %error, "saga step failed in doubt: it may have taken effect and is not compensated; compensating the steps before it");
                            } else {
                                tracing::warn!(target: "catga", saga = self.name, step = step.name(), index,
                                    error = %error, "saga step failed; compensating");
                            }
                            state.failure = Some(failure(step.name(), index, &error, None));
                            state.status = SagaStatus::Compensating;
                            *first_error = Some(error);
                        }
                    }
                }
                // `check` refused a next step beyond the last, so this is "every step ran".
                None => state.status = SagaStatus::Completed,
            },
            SagaStatus::Compensating => {
                if !self.compensate_last(app, data, state).await {
                    self.settle(state);
                }
            }
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed => return false,
        }
        true
    }

    /// What a finished run returns: `Ok` once completed, else the failure the state records
    /// (with the step's error when this run saw it).
    #[allow(
        clippy::result_large_err,
        reason = "the error is `run`'s own, returned to its caller as it is"
    )]
    pub(super) fn outcome(
        &self,
        state: &SagaState,
        first_error: Option<Error>,
    ) -> Result<(), SagaError> {
        let failure = state.failure.clone().unwrap_or_else(|| StepFailure {
            step: String::new(),
            index: None,
            code: String::new(),
            error: "unknown".to_string(),
            dead_letter: None,
        });
        match state.status {
            SagaStatus::Completed => Ok(()),
            SagaStatus::Failed => Err(SagaError::CompensationFailed {
                saga: self.name,
                failure,
                failed: state.compensation_failures.len(),
                source: first_error,
            }),
            _ => Err(SagaError::Compensated {
                saga: self.name,
                failure,
                source: first_error,
            }),
        }
    }

    /// Refuses a state this saga cannot run before anything is sent.
    #[allow(
        clippy::result_large_err,
        reason = "the error is `run`'s own, returned to its caller as it is"
    )]
    pub(super) fn check(&self, state: &SagaState) -> Result<(), SagaError> {
        if state.saga != self.name || state.next_step > self.steps.len() {
            return Err(SagaError::WrongState {
                saga: self.name,
                found: state.saga.clone(),
                next_step: state.next_step,
            });
        }
        for done in &state.completed {
            match self.steps.get(done.index) {
                None => {
                    return Err(SagaError::UnknownStep {
                        saga: self.name,
                        step: done.step.clone(),
                        index: done.index,
                        steps: self.steps.len(),
                    });
                }
                // The position is the step's identity; a new name is a rename.
                Some(step) if step.name() != done.step => {
                    tracing::warn!(target: "catga", saga = self.name, index = done.index,
                        recorded = %done.step, step = step.name(),
                        "a completed step is recorded under another name; it is identified by its position");
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The context of a command the saga sends for step `index`.
    pub(super) fn context(&self, state: &SagaState, index: usize, message_id: Uuid) -> Context {
        let step = self.steps.get(index).map_or("", |s| s.name());
        let ctx = Context::new()
            .with_message_id(message_id)
            .with_correlation_id(state.id)
            .with_header(header::SAGA, self.name)
            .with_header(header::SAGA_STEP, step)
            .with_failures_settled_by_caller();
        match self.step_timeout {
            Some(timeout) => ctx.with_timeout(timeout),
            None => ctx,
        }
    }
}
