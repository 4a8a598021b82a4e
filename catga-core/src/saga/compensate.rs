//! Undoing a saga: the completed steps' compensations, last first, each retried with backoff
//! and kept once in a dead-letter store if it still fails; the others run regardless.

use std::time::Duration;

use uuid::Uuid;

use super::Saga;
use super::progress::{SagaState, SagaStatus};
use super::run::failure;
use crate::error::{Error, ErrorKind};
use crate::mediator::Catga;
use crate::pipeline::Layer;
use crate::store::dead_letter::DynDeadLetterStore;

/// The longest wait between two tries of a compensation.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A compensation given up on: the last error, after how many tries.
struct GaveUp {
    error: Error,
    attempts: u32,
}

impl<D: Sync + 'static> Saga<D> {
    /// Undoes the last completed step (if it has a compensation) and drops it from the
    /// state: one change, so a caller can persist it before the next compensation. A
    /// compensation that fails for good is dead-lettered and recorded, and the saga goes on
    /// with the others. Returns `false`, changing nothing, when no completed step is left.
    pub(super) async fn compensate_last<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &mut SagaState,
    ) -> bool {
        let Some(done) = state.completed.last() else {
            return false;
        };
        // `check` made sure every recorded position is one of this saga's steps.
        if let Some(step) = self.steps.get(done.index)
            && step.compensation_info().is_some()
        {
            let (index, output) = (done.index, done.output.clone());
            if let Err(gave_up) = self.compensate_step(app, data, state, index, &output).await {
                let letter = self.keep(app, data, state, index, &output, &gave_up).await;
                state.compensation_failures.push(failure(
                    step.name(),
                    index,
                    &gave_up.error,
                    letter,
                ));
            }
        }
        state.completed.pop();
        true
    }

    /// Settles the status once every completed step was compensated.
    pub(super) fn settle(&self, state: &mut SagaState) {
        state.status = if state.compensation_failures.is_empty() {
            SagaStatus::Compensated
        } else {
            SagaStatus::Failed
        };
    }

    /// Tries the compensation of step `index` with doubling delays until it succeeds or the
    /// attempts run out. Every try carries the same message id.
    async fn compensate_step<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &SagaState,
        index: usize,
        output: &[u8],
    ) -> Result<(), GaveUp> {
        let Some(step) = self.steps.get(index) else {
            return Ok(());
        };
        let mut delay = self.compensation_delay;
        let mut attempt = 1;
        loop {
            // Built again for each try (a send consumes it); the same reply decodes the same
            // way every time, so a reply that does not decode is not retried.
            let command = match step.compensation(data, output) {
                Ok(Some(command)) => command,
                Ok(None) => return Ok(()),
                Err(source) => {
                    // The forward command's reply, as the state kept it.
                    let error = ErrorKind::Codec {
                        message: step.forward_info().name().to_string(),
                        source,
                    };
                    return Err(GaveUp {
                        error: error.into(),
                        attempts: 0,
                    });
                }
            };
            let ctx = self.context(state, index, state.compensation_message_id(index));
            let error = match app.send_dyn(command, ctx).await {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if attempt >= self.compensation_attempts {
                return Err(GaveUp {
                    error,
                    attempts: attempt,
                });
            }
            tracing::warn!(target: "catga", saga = self.name, step = step.name(), index, attempt,
                error = %error, "saga compensation failed; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(MAX_DELAY);
            attempt += 1;
        }
    }

    /// Keeps a compensation that failed for good, with its command, in the saga's
    /// dead-letter store (the application's unless another was given); returns the letter's
    /// id if it was stored.
    async fn keep<L: Layer>(
        &self,
        app: &Catga<L>,
        data: &D,
        state: &SagaState,
        index: usize,
        output: &[u8],
        gave_up: &GaveUp,
    ) -> Option<Uuid> {
        let step = self.steps.get(index)?;
        let info = step.compensation_info()?;
        let payload = step
            .compensation(data, output)
            .ok()
            .flatten()
            .and_then(|command| command.encode_json().ok());
        let ctx = self.context(state, index, state.compensation_message_id(index));
        let mut letter =
            crate::behavior::dead_letter_record(info.name(), None, payload, &gave_up.error, &ctx);
        letter.attempts = gave_up.attempts;
        let id = letter.id;
        let store: &dyn DynDeadLetterStore = match &self.dead_letters {
            Some(store) => &**store,
            None => &**app.dead_letters(),
        };
        match store.put_dyn(letter).await {
            Ok(()) => {
                metrics::counter!("catga_dead_letters_total", "message" => info.name())
                    .increment(1);
                tracing::error!(target: "catga", saga = self.name, step = step.name(), index,
                    dead_letter = %id, "saga compensation failed after retries; dead-lettered");
                Some(id)
            }
            Err(e) => {
                tracing::error!(target: "catga", saga = self.name, step = step.name(), index, error = %e,
                    "saga compensation failed and could not be dead-lettered; it is recorded in the saga state");
                None
            }
        }
    }
}
