//! Running a saga: forward steps in order, then, on failure, compensations in reverse.

use std::time::Duration;

use super::Saga;
use super::state::{CompletedStep, SagaState, SagaStatus, StepFailure};
use super::step::Wire;
use crate::codec::CodecError;
use crate::context::Context;
use crate::error::Error;
use crate::mediator::Catga;
use crate::pipeline::Layer;
use crate::store::dead_letter::DeadLetterStore;

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
    /// A step's command could not be encoded (or a reply decoded for its compensation).
    #[error("saga `{saga}`: step `{step}` cannot be encoded: {source}")]
    Codec {
        /// The saga.
        saga: &'static str,
        /// The step.
        step: String,
        /// What went wrong.
        #[source]
        source: CodecError,
    },
    /// The state passed to `run` belongs to another saga, or has more steps than this one.
    #[error("this state belongs to saga `{found}` (step {next_step}), not to `{saga}`")]
    WrongState {
        /// This saga.
        saga: &'static str,
        /// The state's saga.
        found: String,
        /// The state's next step.
        next_step: usize,
    },
}

fn failure(step: &str, error: &Error, dead_letter: Option<uuid::Uuid>) -> StepFailure {
    StepFailure {
        step: step.to_string(),
        code: error.code().to_string(),
        error: error.to_string(),
        dead_letter,
    }
}

impl<D: Sync + 'static, S: DeadLetterStore> Saga<D, S> {
    /// Runs (or resumes) the saga over `data`, updating `state` as it goes.
    ///
    /// Every command carries the saga run's id as its correlation id and `catga-saga` /
    /// `catga-saga-step` headers. Returns `Ok(())` once every step succeeded.
    ///
    /// # Errors
    /// [`SagaError::Compensated`] when a step failed and the completed ones were undone;
    /// [`SagaError::CompensationFailed`] when some could not be (they are dead-lettered, and
    /// listed in `state.compensation_failures`); [`SagaError::WrongState`] for a state of
    /// another saga.
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
        if state.saga != self.name || state.next_step > self.steps.len() {
            return Err(SagaError::WrongState {
                saga: self.name,
                found: state.saga.clone(),
                next_step: state.next_step,
            });
        }
        let mut first_error = None;
        while state.status == SagaStatus::Running && state.next_step < self.steps.len() {
            let step = &self.steps[state.next_step];
            let command = step.forward(data).map_err(|source| SagaError::Codec {
                saga: self.name,
                step: step.name().to_string(),
                source,
            })?;
            match self.dispatch(app, state, step.name(), &command).await {
                Ok(reply) => {
                    state.completed.push(CompletedStep {
                        step: step.name().to_string(),
                        output: reply.unwrap_or_else(|| b"null".to_vec()),
                    });
                    state.next_step += 1;
                }
                Err(error) => {
                    tracing::warn!(target: "catga", saga = self.name, step = step.name(), error = %error,
                        "saga step failed; compensating");
                    state.failure = Some(failure(step.name(), &error, None));
                    state.status = SagaStatus::Compensating;
                    first_error = Some(error);
                }
            }
            observe(state);
        }
        if state.status == SagaStatus::Running {
            state.status = SagaStatus::Completed;
            observe(state);
        }
        if state.status == SagaStatus::Compensating {
            self.compensate(app, data, state, &mut observe).await?;
        }
        let failure = state.failure.clone().unwrap_or_else(|| StepFailure {
            step: String::new(),
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

    /// Undoes the completed steps, last first.
    async fn compensate<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
        observe: &mut impl FnMut(&SagaState),
    ) -> Result<(), SagaError> {
        while let Some(done) = state.completed.last() {
            let Some(step) = self.steps.iter().find(|s| s.name() == done.step) else {
                return Err(SagaError::WrongState {
                    saga: self.name,
                    found: state.saga.clone(),
                    next_step: state.next_step,
                });
            };
            let command =
                step.compensation(data, &done.output)
                    .map_err(|source| SagaError::Codec {
                        saga: self.name,
                        step: step.name().to_string(),
                        source,
                    })?;
            if let Some(command) = command
                && let Err(error) = self
                    .compensate_step(app, state, step.name(), &command)
                    .await
            {
                let letter = self.dead_letter(state, step.name(), &command, &error).await;
                state
                    .compensation_failures
                    .push(failure(step.name(), &error, letter));
            }
            state.completed.pop();
            observe(state);
        }
        state.status = if state.compensation_failures.is_empty() {
            SagaStatus::Compensated
        } else {
            SagaStatus::Failed
        };
        observe(state);
        Ok(())
    }

    /// Tries a compensation with doubling delays until it succeeds or the attempts run out.
    async fn compensate_step<L: Layer>(
        &self,
        app: &Catga<L>,
        state: &SagaState,
        step: &'static str,
        command: &Wire,
    ) -> Result<(), Error> {
        let mut delay = self.compensation_delay;
        let mut attempt = 1;
        loop {
            match self.dispatch(app, state, step, command).await {
                Ok(_) => return Ok(()),
                Err(error) if attempt >= self.compensation_attempts => return Err(error),
                Err(error) => {
                    tracing::warn!(target: "catga", saga = self.name, step, attempt, error = %error,
                        "saga compensation failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2).min(Duration::from_secs(60));
                    attempt += 1;
                }
            }
        }
    }

    async fn dispatch<L: Layer>(
        &self,
        app: &Catga<L>,
        state: &SagaState,
        step: &'static str,
        (name, payload): &Wire,
    ) -> Result<Option<Vec<u8>>, Error> {
        let ctx = Context::new()
            .with_correlation_id(state.id)
            .with_header("catga-saga", self.name)
            .with_header("catga-saga-step", step);
        app.dispatch_bytes(name, payload, ctx).await
    }

    /// Keeps a compensation that failed for good; returns the letter's id if it was stored.
    async fn dead_letter(
        &self,
        state: &SagaState,
        step: &'static str,
        (name, payload): &Wire,
        error: &Error,
    ) -> Option<uuid::Uuid> {
        let ctx = Context::new()
            .with_correlation_id(state.id)
            .with_header("catga-saga", self.name)
            .with_header("catga-saga-step", step);
        let mut letter =
            crate::behavior::dead_letter_record(name, None, Some(payload.clone()), error, &ctx);
        letter.attempts = self.compensation_attempts;
        let id = letter.id;
        match self.dead_letters.put(letter).await {
            Ok(()) => {
                tracing::error!(target: "catga", saga = self.name, step, dead_letter = %id,
                    "saga compensation failed after retries; dead-lettered");
                Some(id)
            }
            Err(e) => {
                tracing::error!(target: "catga", saga = self.name, step, error = %e,
                    "saga compensation failed and could not be dead-lettered; it is recorded in the saga state");
                None
            }
        }
    }
}
