//! A saga's progress as a plain value, so it can be stored and a saga resumed after a crash.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a saga is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SagaStatus {
    /// Steps are being run forward.
    Running,
    /// A step failed; completed steps are being compensated, last first.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every completed step was compensated.
    Compensated,
    /// A step failed and at least one compensation failed even after retries (it was
    /// dead-lettered).
    Failed,
}

impl SagaStatus {
    /// Whether the saga has nothing left to do.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
        )
    }
}

/// A step that succeeded, with its reply (JSON), which its compensation may need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedStep {
    /// The step's name.
    pub step: String,
    /// The command's reply, as JSON.
    pub output: Vec<u8>,
}

/// A step or compensation that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step's name.
    pub step: String,
    /// The error's stable code.
    pub code: String,
    /// The error, as displayed.
    pub error: String,
    /// For a compensation that failed for good, the dead letter that keeps it.
    pub dead_letter: Option<Uuid>,
}

/// A saga's progress: which steps completed (with their replies), what failed, what is left.
/// Serialise it to persist a saga between steps; pass it back to
/// [`Saga::run`](super::Saga::run) to resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaState {
    /// The saga definition's name.
    pub saga: String,
    /// This run's id; every message the saga sends carries it as correlation id.
    pub id: Uuid,
    /// Where it is.
    pub status: SagaStatus,
    /// Steps that completed and are not compensated yet, in order.
    pub completed: Vec<CompletedStep>,
    /// The index of the next step to run forward.
    pub next_step: usize,
    /// The forward step that failed, once one has.
    pub failure: Option<StepFailure>,
    /// Compensations that failed for good.
    pub compensation_failures: Vec<StepFailure>,
}

impl SagaState {
    /// A fresh run of the saga `saga`.
    pub fn new(saga: impl Into<String>) -> Self {
        SagaState {
            saga: saga.into(),
            id: Uuid::now_v7(),
            status: SagaStatus::Running,
            completed: Vec::new(),
            next_step: 0,
            failure: None,
            compensation_failures: Vec::new(),
        }
    }
}
