//! A saga's progress as a plain value, so it can be stored and a saga resumed after a crash.

use serde::{Deserialize, Deserializer, Serialize};
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
    /// Every status, in the order of the lifecycle.
    pub const ALL: [SagaStatus; 5] = [
        SagaStatus::Running,
        SagaStatus::Compensating,
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ];

    /// The status's name as serde writes it (`"Running"`, `"Compensating"`, …): the form a
    /// [saga store](crate::store::saga) keeps in its own column, so the column and the stored
    /// state's JSON agree.
    pub const fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "Running",
            SagaStatus::Compensating => "Compensating",
            SagaStatus::Completed => "Completed",
            SagaStatus::Compensated => "Compensated",
            SagaStatus::Failed => "Failed",
        }
    }

    /// The status [`as_str`](Self::as_str) names `name`, or `None` for any other text.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the saga has nothing left to do.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
        )
    }
}

/// A step that succeeded, with its reply (JSON), which its compensation may need.
///
/// A step is identified by its position in the saga (`index`); its name is kept for people
/// reading the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedStep {
    /// The step's position in the saga, from 0.
    pub index: usize,
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
    /// The step's position in the saga, from 0; `None` only in a state stored before
    /// positions were recorded.
    #[serde(default)]
    pub index: Option<usize>,
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
    /// This run's id; every message the saga sends carries it as correlation id, and the
    /// message ids of its commands are derived from it (see
    /// [`forward_message_id`](Self::forward_message_id)).
    pub id: Uuid,
    /// Where it is.
    pub status: SagaStatus,
    /// Steps that completed and are not compensated yet, in order.
    #[serde(deserialize_with = "completed_steps")]
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

    /// The message id of the command of step `index` in this run: the same on every attempt
    /// (a `Retry` layer's, a resume after a crash), so an
    /// [`Idempotency`](crate::behavior::Idempotency) layer where it is handled runs it once.
    ///
    /// It is the name-based UUID (version 5) of `forward/{index}` in the run id's namespace:
    /// any language can derive it again, and no two runs, steps or directions share one.
    pub fn forward_message_id(&self, index: usize) -> Uuid {
        derived_id(self.id, "forward", index)
    }

    /// The message id of the compensation of step `index` in this run (`compensate/{index}`
    /// in the run id's namespace): the same on every retry, on a resume and when its dead
    /// letter is replayed.
    pub fn compensation_message_id(&self, index: usize) -> Uuid {
        derived_id(self.id, "compensate", index)
    }
}

fn derived_id(run: Uuid, direction: &str, index: usize) -> Uuid {
    Uuid::new_v5(&run, format!("{direction}/{index}").as_bytes())
}

/// A completed step as stored, before steps carried their position.
#[derive(Deserialize)]
struct StoredStep {
    index: Option<usize>,
    step: String,
    output: Vec<u8>,
}

/// Reads the completed steps, giving a step stored without its position the one it has in
/// the list: steps complete in order and are compensated from the end, so the list is
/// always the saga's first steps, and its n-th entry is step n (the name, which two steps
/// could share, is not needed).
fn completed_steps<'de, De: Deserializer<'de>>(
    deserializer: De,
) -> Result<Vec<CompletedStep>, De::Error> {
    let stored = Vec::<StoredStep>::deserialize(deserializer)?;
    Ok(stored
        .into_iter()
        .enumerate()
        .map(|(position, stored)| CompletedStep {
            index: stored.index.unwrap_or(position),
            step: stored.step,
            output: stored.output,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_the_serde_names() {
        for status in SagaStatus::ALL {
            let json = serde_json::to_string(&status).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(SagaStatus::from_name(status.as_str()), Some(status));
        }
        assert_eq!(SagaStatus::from_name("running"), None);
    }

    #[test]
    fn message_ids_depend_on_the_run_the_step_and_the_direction_only() {
        let state = SagaState::new("trip");
        let again = state.clone();
        assert_eq!(state.forward_message_id(1), again.forward_message_id(1));
        assert_eq!(
            state.compensation_message_id(1),
            again.compensation_message_id(1)
        );
        let other_run = SagaState::new("trip");
        let ids = [
            state.forward_message_id(0),
            state.forward_message_id(1),
            state.compensation_message_id(0),
            state.compensation_message_id(1),
            other_run.forward_message_id(0),
            other_run.compensation_message_id(0),
        ];
        for (i, a) in ids.iter().enumerate() {
            assert_eq!(a.get_version_num(), 5);
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn the_derivation_is_the_documented_one() {
        let run = Uuid::parse_str("0190c2a8-4b7e-7c3d-9a51-2f6e8d0b1c47").unwrap_or_default();
        let state = SagaState {
            id: run,
            ..SagaState::new("trip")
        };
        assert_eq!(
            state.forward_message_id(2),
            Uuid::new_v5(&run, b"forward/2")
        );
        assert_eq!(
            state.compensation_message_id(0),
            Uuid::new_v5(&run, b"compensate/0")
        );
    }
}
