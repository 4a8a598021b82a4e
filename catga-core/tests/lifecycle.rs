//! Stopped means stopped, on the in-memory transport: after `Serving::shutdown()` returns,
//! that instance takes nothing more, and a stopped service's queues are released.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::prelude::*;
use catga_core::transport::MemoryTransport;

#[derive(Debug, thiserror::Error)]
#[error("busy")]
pub struct Busy;

impl Retryable for Busy {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub n: u32,
}

/// Which instance handled which rounds, and how many failures are left to inject.
#[derive(Default)]
pub struct Log {
    handled: Mutex<Vec<(u32, u32)>>,
    fail: AtomicU32,
}

/// This instance's tag.
pub struct Tag(pub u32);

#[handler]
async fn round(event: &Round, tag: &Tag, log: &Log) -> Result<(), Busy> {
    log.handled.lock().map_err(|_| Busy)?.push((event.n, tag.0));
    if log
        .fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Err(Busy);
    }
    Ok(())
}

fn instance(bus: &MemoryTransport, service: &str, tag: u32, log: &Arc<Log>) -> Catga {
    Catga::builder()
        .transport(bus.clone())
        .service(service)
        .state(Tag(tag))
        .state_arc(log.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_shutdown_returns_a_stopped_instance_takes_nothing() {
    let bus = MemoryTransport::new().max_deliveries(3, Duration::from_millis(5));
    let log = Arc::new(Log::default());
    let producer = Catga::builder()
        .transport(bus.clone())
        .service("producer")
        .handlers(|_| false)
        .build()
        .unwrap();
    for n in 0..40u32 {
        let app = instance(&bus, &format!("svc{n}"), n, &log);
        let serving = app.serve().await.unwrap();
        // Every other round fails twice first, so redeliveries are in flight at shutdown.
        log.fail
            .store(if n % 2 == 0 { 2 } else { 0 }, Ordering::SeqCst);
        producer.publish(Round { n }).await.unwrap();
        let want = if n % 2 == 0 { 3 } else { 1 };
        for _ in 0..500 {
            let seen = log
                .handled
                .lock()
                .unwrap()
                .iter()
                .filter(|(r, _)| *r == n)
                .count();
            if seen >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        serving.shutdown().await;
        assert_eq!(
            bus.backlog(&format!("svc{n}")),
            0,
            "a stopped service keeps no queue"
        );
    }
    // Published after every instance stopped: nobody may take it.
    producer.publish(Round { n: 99 }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let handled = log.handled.lock().unwrap().clone();
    for n in 0..40u32 {
        let by: Vec<u32> = handled
            .iter()
            .filter(|(r, _)| *r == n)
            .map(|(_, t)| *t)
            .collect();
        let want = if n % 2 == 0 { 3 } else { 1 };
        assert_eq!(by.len(), want, "round {n}: handled by {by:?}");
        assert!(
            by.iter().all(|t| *t == n),
            "round {n} reached only its own service: {by:?}"
        );
    }
    assert!(
        !handled.iter().any(|(r, _)| *r == 99),
        "a stopped instance took an event: {handled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_instance_takes_over_what_a_stopped_one_no_longer_takes() {
    let bus = MemoryTransport::new();
    let log = Arc::new(Log::default());
    let a = instance(&bus, "shared", 1, &log).serve().await.unwrap();
    let b_app = instance(&bus, "shared", 2, &log);
    let b = b_app.serve().await.unwrap();
    a.shutdown().await;
    let producer = Catga::builder()
        .transport(bus.clone())
        .service("producer")
        .handlers(|_| false)
        .build()
        .unwrap();
    for n in 0..50 {
        producer.publish(Round { n }).await.unwrap();
    }
    for _ in 0..500 {
        if log.handled.lock().unwrap().len() == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let handled = log.handled.lock().unwrap().clone();
    assert_eq!(handled.len(), 50);
    assert!(
        handled.iter().all(|(_, t)| *t == 2),
        "only the running instance: {handled:?}"
    );
    b.shutdown().await;
}
