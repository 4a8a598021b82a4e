//! Three `cluster-node` processes per lease backend (NATS key-value, Redis, PostgreSQL), the
//! leader firing scheduled ticks with its fencing token:
//!
//! * killed (`SIGKILL`): another node takes over once the lease ran out, and every scheduled
//!   tick has its effect once (none lost, none applied twice);
//! * stopped (`SIGTERM`): it releases the lease and another takes over at once;
//! * paused past its lease (`SIGSTOP`, then `SIGCONT`): another takes over; the old leader's
//!   writes are refused by their token, it steps down, and no write of its token is accepted
//!   after the new leader's (no split brain).
//!
//! The times are printed, not asserted (they depend on the machine): `failover-figures`
//! measures them over ten runs. Needs NATS with JetStream, Redis and PostgreSQL on loopback;
//! skipped without one unless `CATGA_REQUIRE_SERVICES=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use catga_core::testkit::services;
use catga_examples_cluster::Backend;
use catga_examples_cluster::scenario::{Departure, Place, run};

const NODE: &str = env!("CARGO_BIN_EXE_cluster-node");
/// Short, so the test is quick; `failover-figures` uses 5 s.
const TTL: Duration = Duration::from_secs(2);

async fn place(backend: Backend) -> Option<Place> {
    match Place::new(backend).await {
        Ok(place) => Some(place),
        Err(e) => {
            services::unavailable(
                "failover",
                &format!("PostgreSQL is unreachable: {e}"),
                "run ../shared/services.sh postgres nats redis",
            );
            None
        }
    }
}

async fn departs(backend: Backend, departure: Departure) {
    let Some(place) = place(backend).await else {
        return;
    };
    if departure == Departure::Killed {
        place
            .schedule_ticks(60, Duration::from_millis(50))
            .await
            .expect("scheduled");
    }
    let ran = tokio::task::block_in_place(|| run(Path::new(NODE), &place, TTL, departure));
    let (outcome, nodes) = match ran {
        Ok(ran) => ran,
        Err(e) => {
            place.clean().await;
            panic!("{} {departure:?}: {e}", backend.name());
        }
    };
    eprintln!(
        "{} {departure:?}: another node did fenced work {:?} after the departure (lease {TTL:?}){}",
        backend.name(),
        outcome.takeover,
        if departure == Departure::Paused {
            format!(
                "; the old leader's write refused by token: {}",
                outcome.stale_write_refused
            )
        } else {
            String::new()
        }
    );
    if departure == Departure::Killed {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ticks = place.ticks().await.expect("count");
            if ticks == 60 {
                break;
            }
            if Instant::now() > deadline {
                let odd: Vec<_> = nodes
                    .lines()
                    .into_iter()
                    .filter(|s| !matches!(s.line.event.as_str(), "fenced" | "handled"))
                    .map(|s| s.line)
                    .collect();
                place.clean().await;
                panic!(
                    "{}: {ticks} of 60 ticks applied; the nodes said {odd:?}",
                    backend.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A tick the killed leader fired without marking it fired is fired again by the next
        // one (same message id): its effect finds its row and is not applied twice.
        let again = nodes
            .lines()
            .iter()
            .filter(|s| s.line.event == "duplicate")
            .count();
        eprintln!(
            "{}: 60 of 60 ticks applied once; {again} fired again",
            backend.name()
        );
    }
    drop(nodes);
    place.clean().await;
}

macro_rules! backend_tests {
    ($($module:ident => $backend:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_killed_leader_is_replaced_and_no_tick_is_lost_or_applied_twice() {
                departs($backend, Departure::Killed).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stopped_leader_hands_over() {
                departs($backend, Departure::Stopped).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_paused_leader_is_fenced_off_and_steps_down() {
                departs($backend, Departure::Paused).await;
            }
        }
    )*};
}

backend_tests! {
    nats => Backend::Nats,
    redis => Backend::Redis,
    postgres => Backend::Postgres,
}
