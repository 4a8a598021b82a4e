//! A panic is a failure, never silence (`p16_panicking_handler` on Redis): a panicking
//! request is answered at once with a typed error (code `panic`, not retryable), acknowledged
//! and deleted, and not run again after its caller gave up; a panicking event is kept once;
//! the instance keeps serving, also with one slot (`max_in_flight` 1).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_redis::RedisTransport;
use common::{Server, eventually, pending, xlen};

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crash;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fine {
    pub n: u32,
}

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashRequest;

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub n: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Default)]
pub struct Counts {
    crashes: AtomicU32,
    crash_requests: AtomicU32,
    fine: AtomicU32,
}

pub mod fragile {
    use super::*;

    #[handler(allow(panic_in_handler))]
    impl Counts {
        async fn crash(&self, _event: &Crash) -> Result<(), Never> {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in the event handler");
        }

        async fn crash_request(&self, _cmd: CrashRequest) -> Result<u32, Never> {
            self.crash_requests.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in the request handler");
        }

        async fn fine(&self, _event: &Fine) -> Result<(), Never> {
            self.fine.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn echo(&self, cmd: Echo) -> Result<u32, Never> {
            Ok(cmd.n)
        }
    }
}

async fn transport(server: &Server) -> RedisTransport {
    server
        .builder()
        .max_deliveries(3)
        .ack_wait(Duration::from_millis(300))
        .await
        .unwrap()
}

/// One instance with a single slot.
fn fragile(redis: &RedisTransport) -> (Catga, Arc<Counts>, MemoryDeadLetterStore) {
    let counts = Arc::new(Counts::default());
    let letters = MemoryDeadLetterStore::new();
    let app = Catga::builder()
        .state_arc(counts.clone())
        .transport(redis.clone())
        .service("fragile")
        .serve_max_in_flight(1)
        .handlers(|h| h.name.starts_with("panics::fragile::"))
        .dead_letters(letters.clone())
        .build()
        .unwrap();
    (app, counts, letters)
}

fn caller(redis: &RedisTransport) -> Catga {
    Catga::builder()
        .transport(redis.clone())
        .service("caller")
        .handlers(|_| false)
        // Far longer than the test: an answer means the panic was answered, not timed out.
        .request_timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_panicking_request_is_answered_at_once_and_the_next_hundred_are_too() {
    let Some(server) = Server::get("panic-request").await else {
        return;
    };
    let redis = transport(&server).await;
    let (app, counts, letters) = fragile(&redis);
    let serving = app.serve().await.unwrap();
    let caller = caller(&redis);

    let err = caller.send(CrashRequest).await.unwrap_err();
    assert_eq!(err.code(), "panic", "{err:?}");
    assert!(!err.is_retryable(), "a bug does not go away by retrying");
    for n in 0..100 {
        assert_eq!(caller.send(Echo { n }).await.unwrap(), n);
    }

    // Several claim cycles later, the panicking request has not been run again.
    let stream = redis.request_stream("CrashRequest");
    let mut raw = server.raw().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    serving.shutdown().await;
    assert_eq!(counts.crash_requests.load(Ordering::SeqCst), 1, "run once");
    assert_eq!(
        pending(&mut raw, &stream, "fragile").await,
        0,
        "acknowledged"
    );
    assert_eq!(xlen(&mut raw, &stream).await, 0, "and deleted");
    assert_eq!(
        letters.count().await.unwrap(),
        0,
        "a request's failure goes back to its caller, not to the dead letters"
    );
}

#[tokio::test]
async fn panicking_events_are_kept_once_and_do_not_leak_the_only_slot() {
    let Some(server) = Server::get("panic-event").await else {
        return;
    };
    let redis = transport(&server).await;
    let (app, counts, letters) = fragile(&redis);
    let serving = app.serve().await.unwrap();
    let publisher = caller(&redis);
    publisher.publish(Crash).await.unwrap();
    publisher.publish(Crash).await.unwrap();
    for n in 0..5 {
        publisher.publish(Fine { n }).await.unwrap();
    }
    let raw = server.raw().await;
    let crash_stream = redis.event_stream("Crash");
    eventually("the good events after the panics are handled", || async {
        counts.fine.load(Ordering::SeqCst) == 5
    })
    .await;
    eventually("the panicking ones are kept and acknowledged", || async {
        letters.count().await.unwrap() == 2
            && pending(&mut raw.clone(), &crash_stream, "fragile").await == 0
    })
    .await;
    // Past several claim cycles: nothing runs again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    serving.shutdown().await;

    assert_eq!(
        counts.crashes.load(Ordering::SeqCst),
        2,
        "a panic is not retryable: each panicking event ran once"
    );
    let kept = letters.list(10).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|r| r.code == "panic"), "{kept:?}");
    assert!(
        kept.iter()
            .all(|r| r.error.contains("a bug in the event handler")),
        "{kept:?}"
    );
}
