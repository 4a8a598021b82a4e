//! A panic is a failure, never silence: on the in-memory transport (the NATS and Redis crates
//! test the same against real servers), a panicking handler fails its one message, the
//! caller of a request gets a typed error at once, and the consumer keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::prelude::*;
use catga_core::transport::MemoryTransport;

#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub struct Never;

#[derive(Default)]
pub struct Count(AtomicU32);

impl Count {
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crash;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fine {
    pub n: u32,
}

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divide {
    pub by: u64,
}

pub mod service {
    use super::*;

    #[handler(allow(panic_in_handler))]
    async fn crash(_event: &Crash) -> Result<(), Never> {
        panic!("a bug in the handler")
    }

    #[handler]
    async fn fine(_event: &Fine, count: &Count) -> Result<(), Never> {
        count.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Panics (division by zero) before its first `.await` for `by: 0`.
    #[handler]
    async fn divide(cmd: Divide) -> Result<u64, Never> {
        Ok(100 / cmd.by)
    }
}

fn service(bus: &MemoryTransport, count: Arc<Count>) -> Catga {
    Catga::builder()
        .state_arc(count)
        .transport(bus.clone())
        .service("service")
        .handlers(|h| h.name.starts_with("panics::service::"))
        .serve_max_in_flight(1)
        .build()
        .unwrap()
}

fn client(bus: &MemoryTransport) -> Catga {
    Catga::builder()
        .transport(bus.clone())
        .service("client")
        .handlers(|_| false)
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_panicking_event_handler_is_kept_once_and_the_consumer_goes_on() {
    let bus = MemoryTransport::new().max_deliveries(3, Duration::from_millis(20));
    let count = Arc::new(Count::default());
    let app = service(&bus, count.clone());
    let serving = app.serve().await.unwrap();
    let client = client(&bus);
    client.publish(Crash).await.unwrap();
    client.publish(Crash).await.unwrap();
    for n in 0..5 {
        client.publish(Fine { n }).await.unwrap();
    }
    for _ in 0..1_000 {
        if count.get() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count.get(), 5, "the one in-flight slot was not leaked");
    let kept = app.dead_letters().list_dyn(10).await.unwrap();
    assert_eq!(kept.len(), 2, "each panicking event kept once: {kept:?}");
    assert!(kept.iter().all(|r| r.code == "panic" && r.attempts == 1));
    assert!(
        kept[0].error.contains("a bug in the handler"),
        "{}",
        kept[0].error
    );
    serving.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_request_is_answered_at_once_and_the_next_hundred_are_too() {
    let bus = MemoryTransport::new();
    let app = service(&bus, Arc::default());
    let serving = app.serve().await.unwrap();
    let client = client(&bus);
    let started = tokio::time::Instant::now();
    let err = client.send(Divide { by: 0 }).await.unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "answered at once, not after the 30 s request timeout"
    );
    assert!(matches!(err.kind(), ErrorKind::Remote { .. }), "{err:?}");
    assert_eq!(err.code(), "panic");
    assert!(
        !err.is_retryable(),
        "a panic is a bug: running it again would panic again"
    );
    assert!(err.is_in_doubt());
    for by in 1..=100 {
        assert_eq!(client.send(Divide { by }).await.unwrap(), 100 / by);
    }
    serving.shutdown().await;
}

pub mod chain {
    use super::*;

    #[command(output = u32)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Place;

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Placed;

    #[handler]
    async fn place(_cmd: Place, ctx: &Context) -> Result<u32, Never> {
        ctx.publish(Placed).map_err(|_| Never)?;
        Ok(7)
    }

    #[handler(allow(panic_in_handler))]
    async fn on_placed_panics(_event: &Placed) -> Result<(), Never> {
        panic!("a bug in a follow-up handler")
    }

    #[handler]
    async fn on_placed_counts(_event: &Placed, count: &Count) -> Result<(), Never> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        count.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_follow_up_handler_fails_alone() {
    let count = Arc::new(Count::default());
    let app = Catga::builder()
        .state_arc(count.clone())
        .handlers(|h| h.name.starts_with("panics::chain::"))
        .allow_unhandled::<Divide>()
        .build()
        .unwrap();
    // The command committed; its follow-up's panicking handler neither undoes that nor stops
    // its sibling handler.
    assert_eq!(app.send(chain::Place).await.unwrap(), 7);
    assert_eq!(count.get(), 1);
}

#[tokio::test]
async fn a_panic_in_a_direct_send_propagates_to_its_caller() {
    let app = Catga::builder()
        .handlers(|h| h.name.starts_with("panics::service::"))
        .allow_unhandled::<chain::Place>()
        .state(Count::default())
        .build()
        .unwrap();
    // An ordinary call in the caller's task: the panic is the caller's, as from any function.
    let joined = tokio::spawn(async move { app.send(Divide { by: 0 }).await }).await;
    assert!(joined.is_err_and(|e| e.is_panic()));
}
