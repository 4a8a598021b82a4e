//! A saga step's identity is its position: compensations in reverse order whatever the
//! steps are called or send, duplicate names refused when the saga is built, and states
//! stored before steps carried their position resumed correctly (the reproducer `p10_saga`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::saga::{
    CompletedStep, Saga, SagaBuildError, SagaBuilder, SagaError, SagaState, SagaStatus,
};
use catga_core::store::dead_letter::DeadLetterStore;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookFlight;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelFlight {
    pub booking: u64,
}

#[command(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookCar;

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelCar {
    pub rental: String,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BookHotel;

/// A command that never leaves the process.
#[command(local)]
#[derive(Debug, Clone)]
pub struct Note;

#[derive(Debug, thiserror::Error)]
#[error("refused")]
pub struct Refused;

/// The travel agency: what it was asked, in order, and what fails.
#[derive(Default)]
pub struct Agency {
    calls: Mutex<Vec<String>>,
    hotel_fails: AtomicBool,
    cancel_car_fails: AtomicBool,
    /// Flight bookings are numbered 17, 18, …
    bookings: AtomicU64,
}

impl Agency {
    fn failing_hotel() -> Arc<Self> {
        let agency = Agency::default();
        agency.hotel_fails.store(true, Ordering::SeqCst);
        Arc::new(agency)
    }

    fn call(&self, what: String) {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(what);
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[handler]
impl Agency {
    async fn book_flight(&self, _cmd: BookFlight) -> Result<u64, Refused> {
        self.call("BookFlight".into());
        Ok(17 + self.bookings.fetch_add(1, Ordering::SeqCst))
    }

    async fn cancel_flight(&self, cmd: CancelFlight) -> Result<(), Refused> {
        self.call(format!("CancelFlight({})", cmd.booking));
        Ok(())
    }

    async fn book_car(&self, _cmd: BookCar) -> Result<String, Refused> {
        self.call("BookCar".into());
        Ok("car-9".into())
    }

    async fn cancel_car(&self, cmd: CancelCar) -> Result<(), Refused> {
        self.call(format!("CancelCar({})", cmd.rental));
        if self.cancel_car_fails.load(Ordering::SeqCst) {
            return Err(Refused);
        }
        Ok(())
    }

    async fn book_hotel(&self, _cmd: BookHotel) -> Result<(), Refused> {
        self.call("BookHotel".into());
        if self.hotel_fails.load(Ordering::SeqCst) {
            return Err(Refused);
        }
        Ok(())
    }

    async fn note(&self, _cmd: Note) -> Result<(), Refused> {
        Ok(())
    }
}

pub struct Trip;

fn app(agency: &Arc<Agency>) -> Catga {
    Catga::builder().state_arc(agency.clone()).build().unwrap()
}

/// Book a flight, a car and a hotel, the steps named `names`.
fn trip_named(saga: &'static str, [flight, car, hotel]: [&'static str; 3]) -> SagaBuilder<Trip> {
    Saga::builder(saga)
        .step(
            flight,
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .step(car, |_: &Trip| BookCar, |_, rental| CancelCar { rental })
        .last_step(hotel, |_: &Trip| BookHotel)
        .compensation_retries(2, Duration::from_millis(1))
}

fn trip() -> Saga<Trip> {
    trip_named("trip", ["flight", "car", "hotel"])
        .build()
        .unwrap()
}

const UNDONE: [&str; 5] = [
    "BookFlight",
    "BookCar",
    "BookHotel",
    "CancelCar(car-9)",
    "CancelFlight(17)",
];

#[tokio::test(start_paused = true)]
async fn p10_completed_steps_are_compensated_in_reverse_order() {
    let agency = Agency::failing_hotel();
    let saga = trip();
    let mut state = saga.start();
    let result = saga.run(&app(&agency), &Trip, &mut state).await;
    assert!(result.is_err());
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(agency.calls(), UNDONE);
    let failure = state.failure.as_ref().unwrap();
    assert_eq!((failure.step.as_str(), failure.index), ("hotel", Some(2)));
}

#[tokio::test(start_paused = true)]
async fn p10_a_failed_compensation_is_dead_lettered_once_and_the_others_still_run() {
    let agency = Agency::failing_hotel();
    agency.cancel_car_fails.store(true, Ordering::SeqCst);
    let app = app(&agency);
    let saga = trip();
    let mut state = saga.start();
    let err = saga.run(&app, &Trip, &mut state).await.unwrap_err();
    assert!(
        matches!(err, SagaError::CompensationFailed { failed: 1, .. }),
        "{err}"
    );
    assert_eq!(state.status, SagaStatus::Failed);
    assert_eq!(
        agency.calls(),
        [
            "BookFlight",
            "BookCar",
            "BookHotel",
            "CancelCar(car-9)",
            "CancelCar(car-9)",
            "CancelFlight(17)"
        ]
    );
    assert_eq!(app.dead_letters().count().await.unwrap(), 1);
    let failed = &state.compensation_failures[0];
    assert_eq!((failed.step.as_str(), failed.index), ("car", Some(1)));
}

#[test]
fn p10_two_steps_sharing_a_name_are_refused_when_the_saga_is_built() {
    let err = trip_named("trip-dup", ["book", "book", "hotel"])
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        SagaBuildError::DuplicateStep {
            saga: "trip-dup",
            step: "book",
            first: 0,
            second: 1,
        }
    );
    assert_eq!(
        err.to_string(),
        "saga `trip-dup`: the steps at positions 0 and 1 are both named `book`; give each step a name of its own"
    );
}

#[test]
fn a_name_repeated_further_on_names_both_positions() {
    let err = Saga::builder("long")
        .step(
            "flight",
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .step("car", |_: &Trip| BookCar, |_, rental| CancelCar { rental })
        .step(
            "flight",
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            SagaBuildError::DuplicateStep {
                first: 0,
                second: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_step_sending_a_local_message_is_refused_when_the_saga_is_built() {
    let err = Saga::builder("noted")
        .last_step("note", |_: &Trip| Note)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        SagaBuildError::LocalMessage {
            saga: "noted",
            step: "note",
            message: "Note",
        }
    );
}

#[tokio::test(start_paused = true)]
async fn steps_sending_the_same_command_are_told_apart_by_position() {
    let agency = Agency::failing_hotel();
    // Behind `Idempotency`, two identical commands of one run are still two operations:
    // their message ids differ by position.
    let app = Catga::builder()
        .state_arc(agency.clone())
        .layer(Idempotency::default())
        .build()
        .unwrap();
    let saga = Saga::builder("round-trip")
        .step(
            "outbound",
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .step(
            "return",
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .last_step("hotel", |_: &Trip| BookHotel)
        .build()
        .unwrap();
    let mut state = saga.start();
    saga.run(&app, &Trip, &mut state).await.unwrap_err();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(
        agency.calls(),
        [
            "BookFlight",
            "BookFlight",
            "BookHotel",
            "CancelFlight(18)",
            "CancelFlight(17)"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_state_records_positions_and_reads_them_back() {
    let agency = Arc::new(Agency::default());
    let saga = trip();
    let mut state = saga.start();
    saga.run(&app(&agency), &Trip, &mut state).await.unwrap();
    let json = serde_json::to_value(&state).unwrap();
    let indexes: Vec<u64> = json["completed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    let back: SagaState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
}

/// A state as catga stored it before steps carried their position: the flight and the car
/// booked, the hotel refused, nothing compensated yet (the process stopped there).
fn stored_without_positions(saga: &str, id: uuid::Uuid, names: [&str; 2]) -> String {
    format!(
        r#"{{"saga":"{saga}","id":"{id}","status":"Compensating",
            "completed":[{{"step":"{}","output":[49,55]}},{{"step":"{}","output":[34,99,97,114,45,57,34]}}],
            "next_step":2,
            "failure":{{"step":"hotel","code":"handler","error":"refused","dead_letter":null}},
            "compensation_failures":[]}}"#,
        names[0], names[1]
    )
}

#[tokio::test(start_paused = true)]
async fn a_state_stored_before_steps_had_positions_resumes_by_position() {
    let agency = Arc::new(Agency::default());
    let saga = trip();
    let json = stored_without_positions("trip", uuid::Uuid::now_v7(), ["flight", "car"]);
    let mut state: SagaState = serde_json::from_str(&json).unwrap();
    assert_eq!(
        state.completed.iter().map(|c| c.index).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(state.failure.as_ref().unwrap().index, None);
    saga.run(&app(&agency), &Trip, &mut state)
        .await
        .unwrap_err();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(agency.calls(), ["CancelCar(car-9)", "CancelFlight(17)"]);
}

#[tokio::test(start_paused = true)]
async fn a_state_stuck_by_two_steps_sharing_a_name_is_compensated_once_they_are_renamed() {
    // What the old saga left behind when two steps shared a name: stuck in `Compensating`.
    // Renaming one step (the build now insists) and resuming undoes both, each by position.
    let agency = Arc::new(Agency::default());
    let saga = trip_named("trip-dup", ["book", "book-car", "hotel"])
        .build()
        .unwrap();
    let json = stored_without_positions("trip-dup", uuid::Uuid::now_v7(), ["book", "book"]);
    let mut state: SagaState = serde_json::from_str(&json).unwrap();
    saga.run(&app(&agency), &Trip, &mut state)
        .await
        .unwrap_err();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(agency.calls(), ["CancelCar(car-9)", "CancelFlight(17)"]);
}

#[tokio::test(start_paused = true)]
async fn a_state_recording_a_step_the_saga_does_not_have_is_refused_before_anything_is_sent() {
    let agency = Arc::new(Agency::default());
    let short = Saga::builder("trip")
        .step(
            "flight",
            |_: &Trip| BookFlight,
            |_, booking| CancelFlight { booking },
        )
        .last_step("car", |_: &Trip| BookCar)
        .build()
        .unwrap();
    let mut state = short.start();
    state.status = SagaStatus::Compensating;
    state.next_step = 2;
    state.completed = vec![
        CompletedStep {
            index: 0,
            step: "flight".into(),
            output: b"17".to_vec(),
        },
        CompletedStep {
            index: 2,
            step: "hotel".into(),
            output: b"null".to_vec(),
        },
    ];
    let before = state.clone();
    let err = short
        .run(&app(&agency), &Trip, &mut state)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            SagaError::UnknownStep {
                index: 2,
                steps: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(agency.calls().is_empty());
    assert_eq!(state, before);
}

#[tokio::test(start_paused = true)]
async fn a_renamed_step_is_still_the_step_at_its_position() {
    let agency = Arc::new(Agency::default());
    let renamed = trip_named("trip", ["plane", "rental", "hotel"])
        .build()
        .unwrap();
    let json = stored_without_positions("trip", uuid::Uuid::now_v7(), ["flight", "car"]);
    let mut state: SagaState = serde_json::from_str(&json).unwrap();
    renamed
        .run(&app(&agency), &Trip, &mut state)
        .await
        .unwrap_err();
    assert_eq!(agency.calls(), ["CancelCar(car-9)", "CancelFlight(17)"]);
}
