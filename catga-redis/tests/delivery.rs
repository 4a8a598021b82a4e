//! The delivery budget on Redis streams, through raw commands: an entry that kept killing its
//! consumers is set aside without running (and stays on the stream: nothing is deleted from
//! an event stream); a pending entry trimmed away before it was handled is forgotten; entries
//! waiting for a slot are not claimed away and run twice. (The budget and the dead letters as
//! every transport keeps them are the conformance suite's `delivery` family.)

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_core::testkit::eventually;
use catga_redis::RedisTransport;
use common::{Options, Server, pending, xlen};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the database is busy")]
pub struct Busy;

/// How often each job's handler ran.
#[derive(Default)]
pub struct Runs(Mutex<HashMap<u64, u32>>);

impl Runs {
    fn of(&self, id: u64) -> u32 {
        self.0.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

pub mod jobs {
    use super::*;

    #[handler]
    impl Runs {
        async fn job(&self, job: &Job) -> Result<(), Busy> {
            *self.0.lock().map_err(|_| Busy)?.entry(job.id).or_default() += 1;
            Ok(())
        }
    }
}

const MAX_DELIVERIES: u32 = 3;

fn publisher(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("publisher")
        .handlers(|_| false)
        .build()
        .unwrap()
}

/// Reads every new entry of `stream` as consumer `name` of `group`, as an instance that then
/// dies would, and returns their ids.
async fn read_and_die(
    raw: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    name: &str,
) -> Vec<String> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(name)
        .arg("COUNT")
        .arg(100)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(raw)
        .await
        .unwrap();
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| e.id)
        .collect()
}

async fn create_group(raw: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("$")
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_entry_that_kept_killing_its_consumers_is_set_aside_without_running() {
    let Some(server) = Server::get("exhausted").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            max_deliveries: Some(MAX_DELIVERIES),
            ack_wait: Some(Duration::from_millis(200)),
            ..server.options()
        })
        .await;
    let stream = redis.event_stream("Job");
    let mut raw = server.raw().await;
    create_group(&mut raw, &stream, "jobs").await;
    publisher(&redis).publish(Job { id: 5 }).await.unwrap();
    // Delivered max_deliveries times, each to an instance that died handling it.
    let ids = read_and_die(&mut raw, &stream, "jobs", "ghost").await;
    assert_eq!(ids.len(), 1);
    redis::cmd("XCLAIM")
        .arg(&stream)
        .arg("jobs")
        .arg("ghost")
        .arg(0)
        .arg(&ids[0])
        .arg("RETRYCOUNT")
        .arg(MAX_DELIVERIES)
        .query_async::<redis::Value>(&mut raw)
        .await
        .unwrap();

    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    eventually("it is claimed, kept and acknowledged", || async {
        letters.count().await.unwrap() == 1 && pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(
        runs.of(5),
        0,
        "a message that kills its consumer is not run again"
    );
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept[0].code, "exhausted", "{kept:?}");
    assert_eq!(kept[0].attempts, MAX_DELIVERIES + 1);
    assert_eq!(
        xlen(&mut raw, &stream).await,
        1,
        "kept on the stream too: nothing is deleted from an event stream"
    );
}

#[tokio::test]
async fn a_pending_entry_trimmed_before_it_was_handled_is_forgotten_not_kept() {
    let Some(server) = Server::get("trimmed").await else {
        return;
    };
    // The instance restarts under its name and re-reads its own pending entries, which the
    // server returns without fields once trimmed.
    let redis = server
        .transport_with(Options {
            instance: Some("ghost".to_string()),
            ..server.options()
        })
        .await;
    let stream = redis.event_stream("Job");
    let mut raw = server.raw().await;
    create_group(&mut raw, &stream, "jobs").await;
    publisher(&redis).publish(Job { id: 6 }).await.unwrap();
    let ids = read_and_die(&mut raw, &stream, "jobs", "ghost").await;
    // Trimming takes it while it is pending (as `MAXLEN ~` does to a consumer too far behind).
    redis::cmd("XTRIM")
        .arg(&stream)
        .arg("MAXLEN")
        .arg(0)
        .query_async::<u64>(&mut raw)
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);

    let letters = MemoryDeadLetterStore::new();
    let runs = Arc::new(Runs::default());
    let consumer = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("jobs")
        .handlers(|h| h.name.starts_with("delivery::jobs::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    let serving = consumer.serve().await.unwrap();
    eventually("the pending list forgets it", || async {
        pending(&mut raw.clone(), &stream, "jobs").await == 0
    })
    .await;
    serving.shutdown().await;
    assert_eq!(runs.of(6), 0);
    assert_eq!(
        letters.count().await.unwrap(),
        0,
        "nothing is left to keep: the loss is logged (documented: trimming does not wait)"
    );
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slow {
    pub n: u64,
}

#[derive(Default)]
pub struct SlowRuns(Mutex<HashMap<u64, u32>>);

pub mod slow {
    use super::*;

    #[handler]
    impl SlowRuns {
        async fn slow(&self, event: &Slow) -> Result<(), Busy> {
            *self.0.lock().map_err(|_| Busy)?.entry(event.n).or_default() += 1;
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(())
        }
    }
}

/// Entries wait for a free slot far longer than the claim idle time: none may be taken over
/// (by this instance's own claimer or another's) and run a second time meanwhile.
#[tokio::test]
async fn entries_waiting_for_a_slot_are_not_claimed_away_and_run_twice() {
    let Some(server) = Server::get("slots").await else {
        return;
    };
    let redis = server
        .transport_with(Options {
            ack_wait: Some(Duration::from_millis(200)),
            ..server.options()
        })
        .await;
    let runs = Arc::new(SlowRuns::default());
    let app = Catga::builder()
        .state_arc(runs.clone())
        .transport(redis.clone())
        .service("slow")
        .serve_max_in_flight(1)
        .handlers(|h| h.name.starts_with("delivery::slow::"))
        .build()
        .unwrap();
    let serving = app.serve().await.unwrap();
    let publisher = publisher(&redis);
    for n in 0..8 {
        publisher.publish(Slow { n }).await.unwrap();
    }
    let stream = redis.event_stream("Slow");
    let raw = server.raw().await;
    eventually("all eight are handled and acknowledged", || async {
        runs.0.lock().unwrap().len() == 8 && pending(&mut raw.clone(), &stream, "slow").await == 0
    })
    .await;
    serving.shutdown().await;
    let runs = runs.0.lock().unwrap().clone();
    assert!(
        runs.values().all(|&r| r == 1),
        "each ran once, though the last waited 1 s behind a 200 ms claim idle time: {runs:?}"
    );
}
