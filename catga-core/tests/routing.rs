//! Where a message arrived decides what it is, on the in-memory transport: an envelope that
//! says it is a command, published on the route of an event, is kept (code `envelope`, at
//! the delivery stage) and never dispatched. The in-memory transport hands envelopes over as
//! they were written, so the `Transport` API is enough to smuggle one; the NATS and Redis
//! crates write the same lie into headers and stream fields by hand. (The delivery rules
//! every transport keeps are the conformance suite, `tests/conformance.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::store::dead_letter::FailureStage;
use catga_core::transport::{MemoryTransport, Transport};
use catga_core::{MessageKind, WireFormat};

#[derive(Debug, thiserror::Error)]
#[error("cannot process")]
pub struct Bad;

/// Runs of the handlers.
#[derive(Default)]
pub struct Runs(AtomicU32);

impl Runs {
    fn get(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
    fn bump(&self) -> u32 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// Waits (on the paused clock) until `done` holds, for at most a minute of virtual time.
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..6_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub mod routed {
    use super::*;

    #[command(output = u64)]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Refund {
        pub cents: u64,
    }

    #[event]
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct Viewed {
        pub page: u64,
    }

    #[handler]
    async fn refund(cmd: Refund, runs: &Runs) -> Result<u64, Bad> {
        runs.bump();
        Ok(cmd.cents)
    }

    #[handler]
    async fn viewed(_event: &Viewed) -> Result<(), Bad> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn where_a_message_arrived_decides_what_it_is() {
    let bus = MemoryTransport::new();
    let runs = Arc::new(Runs::default());
    let shop = Catga::builder()
        .state_arc(runs.clone())
        .transport(bus.clone())
        .service("shop")
        .handlers(|h| h.name.starts_with("routing::routed::"))
        .build()
        .unwrap();
    let serving = shop.serve().await.unwrap();
    // On the route of the event `Viewed`, an envelope that says it is a command.
    let smuggled = Envelope::with_payload(
        "Viewed",
        MessageKind::Command,
        &Context::new(),
        WireFormat::Json,
        br#"{"page":1}"#.to_vec(),
    );
    bus.publish(smuggled).await.unwrap();
    settle(|| {
        futures::FutureExt::now_or_never(shop.dead_letters().count_dyn())
            .and_then(Result::ok)
            .unwrap_or(0)
            == 1
    })
    .await;
    let kept = shop.dead_letters().list_dyn(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].code, "envelope");
    assert_eq!(kept[0].stage, FailureStage::Delivery);
    assert!(
        kept[0].error.contains("says its kind is `command`"),
        "{}",
        kept[0].error
    );
    assert_eq!(runs.get(), 0, "no handler ran");
    serving.shutdown().await;
}
