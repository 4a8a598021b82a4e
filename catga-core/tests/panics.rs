//! A panic in one process: a panicking follow-up handler fails alone, and a panic in a direct
//! `send` is the caller's, as from any function. (Across a transport, where a panic becomes
//! a typed `panic` failure and the consumer keeps serving, is the conformance suite's
//! `panics` family, `tests/conformance.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::prelude::*;

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
