//! A panic is a failure, never silence (rel_r2, rel_r5, p16), over real NATS: a request whose
//! handler panics (before its first `.await`, on the responder's inline first poll, or later)
//! gets an error reply at once, coded `panic` and not retryable, and the subscription goes on
//! answering; a panicking event is kept once in the dead-letter store and terminated, and the
//! consumer goes on, even with one in-flight slot.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catga_core::ErrorKind;
use catga_core::behavior::DeadLetter;
use catga_core::prelude::*;
use catga_core::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE, eventually};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Divide {
    pub by: u64,
    /// Wait before dividing: the panic comes after the first `.await`.
    pub later: bool,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Crash {
    pub n: u32,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fine {
    pub n: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Default)]
pub struct Counts {
    divided: AtomicU32,
    crashes: AtomicU32,
    fine: AtomicU32,
}

pub mod calc {
    use super::*;

    #[handler(allow(panic_in_handler))]
    impl Counts {
        async fn divide(&self, cmd: Divide) -> Result<u64, Never> {
            if cmd.later {
                tokio::task::yield_now().await;
            }
            self.divided.fetch_add(1, Ordering::SeqCst);
            // Panics for `by: 0`, before the first `.await` unless `later`.
            Ok(100 / cmd.by)
        }

        async fn crash(&self, _event: &Crash) -> Result<(), Never> {
            self.crashes.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in an event handler");
        }

        async fn fine(&self, _event: &Fine) -> Result<(), Never> {
            self.fine.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

fn service(
    nats: &NatsTransport,
    service: &str,
    letters: &MemoryDeadLetterStore,
) -> (Catga<impl catga_core::Layer>, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let app = Catga::builder()
        .state_arc(counts.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("panics::calc::"))
        .layer(DeadLetter::new(letters.clone()))
        .dead_letters(letters.clone())
        .serve_max_in_flight(1)
        .build()
        .unwrap();
    (app, counts)
}

fn caller(nats: &NatsTransport, timeout: Duration) -> Catga {
    Catga::builder()
        .transport(nats.clone())
        .handlers(|_| false)
        .request_timeout(timeout)
        .build()
        .unwrap()
}

/// The caller's error for a request whose handler panicked: the remote side's `panic`, not a
/// timeout and not retryable.
fn assert_panic_reply(result: Result<u64, catga_core::Error>) {
    let error = result.expect_err("a panicking handler fails the request");
    match error.kind() {
        ErrorKind::Remote { .. } => {
            assert_eq!(error.code(), "panic", "{error}");
            assert!(!error.is_retryable(), "a panic is not retryable: {error}");
            assert!(error.is_in_doubt(), "{error}");
        }
        other => panic!("expected the remote side's `panic` reply, got {other:?}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_is_answered_at_once_and_the_next_hundred_too() {
    let Some(corner) = Corner::new("a_panicking_request_is_answered").await else {
        return;
    };
    let nats = corner.connect().await;
    let letters = MemoryDeadLetterStore::new();
    let (app, counts) = service(&nats, &common::unique("calc"), &letters);
    let serving = app.serve().await.unwrap();
    // A timeout long enough that waiting for it would be seen: the reply must not be one.
    let caller = caller(&corner.connect().await, Duration::from_secs(60));

    assert_panic_reply(
        caller
            .send(Divide {
                by: 0,
                later: false,
            })
            .await,
    );
    for n in 1..=100 {
        assert_eq!(
            caller
                .send(Divide {
                    by: 1,
                    later: false
                })
                .await
                .unwrap(),
            100,
            "request {n} after the panic"
        );
    }
    assert_panic_reply(caller.send(Divide { by: 0, later: true }).await);
    assert_eq!(
        caller.send(Divide { by: 4, later: true }).await.unwrap(),
        25
    );
    assert_eq!(counts.divided.load(Ordering::SeqCst), 103);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_event_is_kept_once_and_terminated_and_the_consumer_goes_on() {
    let Some(corner) = Corner::new("a_panicking_event_is_kept_once").await else {
        return;
    };
    let ack_wait = Duration::from_secs(1);
    let nats = corner
        .transport()
        .ack_wait(ack_wait)
        .max_deliveries(3)
        .await
        .unwrap();
    let letters = MemoryDeadLetterStore::new();
    let service_name = common::unique("calc");
    let (app, counts) = service(&nats, &service_name, &letters);
    let serving = app.serve().await.unwrap();
    let publisher = caller(&corner.connect().await, Duration::from_secs(5));

    publisher.publish(Crash { n: 1 }).await.unwrap();
    publisher.publish(Crash { n: 2 }).await.unwrap();
    for n in 0..5 {
        publisher.publish(Fine { n }).await.unwrap();
    }
    eventually(
        "the good events after two panics (one in-flight slot)",
        PATIENCE,
        || counts.fine.load(Ordering::SeqCst) == 5,
    )
    .await;
    let kept = common::dead_letters(&letters, 2, "both panicking events kept").await;
    common::settled(
        &nats,
        &service_name,
        "Crash",
        "the panicking events terminated",
    )
    .await;
    // Longer than the acknowledgement wait: a delivery left unsettled would be back by now.
    tokio::time::sleep(ack_wait * 3).await;
    let kept_after = letters.list(10).await.unwrap();
    assert_eq!(kept_after.len(), 2, "each kept once: {kept_after:?}");
    assert!(
        kept.iter()
            .all(|r| r.code == "panic" && r.message == "Crash"),
        "{kept:?}"
    );
    assert_eq!(
        counts.crashes.load(Ordering::SeqCst),
        2,
        "a panic is not retryable: each ran once"
    );
    common::settled(&nats, &service_name, "Crash", "still nothing pending").await;
    serving.shutdown().await;
}

/// An application side that panics where catga's never does: the transport's own guard
/// keeps the subscription and the consumer alive (defence in depth: catga contains its
/// handlers' panics inside `Inbound`, this is what stands if anything else unwinds).
struct PanickingInbound {
    events: AtomicU32,
    observed: AtomicU32,
}

impl catga_core::transport::Inbound for PanickingInbound {
    fn event(
        &self,
        _route: &str,
        _envelope: catga_core::envelope::Envelope,
        delivery: catga_core::transport::Delivery,
    ) -> futures::future::BoxFuture<'static, catga_core::transport::Disposition> {
        self.events.fetch_add(1, Ordering::SeqCst);
        // The first delivery unwinds out of the application; the next one is handled.
        assert!(delivery.attempt > 1, "a panic while handing over an event");
        Box::pin(async { catga_core::transport::Disposition::Ack })
    }

    fn request(
        &self,
        _route: &str,
        envelope: catga_core::envelope::Envelope,
        _delivery: catga_core::transport::Delivery,
    ) -> futures::future::BoxFuture<'static, catga_core::transport::Reply> {
        assert!(
            envelope.payload != b"boom",
            "a panic while handing over a request"
        );
        Box::pin(async move { catga_core::transport::Reply::Ok(envelope.payload) })
    }

    fn reject(
        &self,
        _rejected: catga_core::transport::Rejected,
    ) -> futures::future::BoxFuture<'static, catga_core::transport::Disposition> {
        Box::pin(async { catga_core::transport::Disposition::Terminate })
    }

    fn observe(&self, _name: &str) {
        self.observed.fetch_add(1, Ordering::SeqCst);
        panic!("a panic while reporting an observed event");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_around_the_application_cannot_end_the_transports_loops() {
    use catga_core::envelope::Envelope;
    use catga_core::transport::{Reply, ServePlan, Transport};
    use catga_core::{MessageKind, WireFormat};

    let Some(corner) = Corner::new("a_panic_around_the_application").await else {
        return;
    };
    let nats = corner.connect().await;
    let inbound = Arc::new(PanickingInbound {
        events: AtomicU32::new(0),
        observed: AtomicU32::new(0),
    });
    let service = common::unique("raw");
    let plan = ServePlan {
        service: service.clone(),
        events: vec!["Fine".to_string()],
        requests: vec!["Echo".to_string()],
        max_in_flight: 1,
        observe: vec!["Fine".to_string()],
    };
    let serving = nats.serve(plan, inbound.clone()).await.unwrap();
    let envelope = |name: &'static str, kind, payload: &[u8]| {
        Envelope::with_payload(
            name,
            kind,
            &Context::new(),
            WireFormat::Json,
            payload.to_vec(),
        )
    };
    let wait = Duration::from_secs(30);
    let boom = nats
        .request(envelope("Echo", MessageKind::Command, b"boom"), wait)
        .await
        .unwrap();
    match boom {
        Reply::Err(failure) => {
            assert_eq!(failure.code, "panic");
            assert!(!failure.retryable);
        }
        Reply::Ok(_) => panic!("a panicking request cannot succeed"),
    }
    for n in 0..20u8 {
        let reply = nats
            .request(envelope("Echo", MessageKind::Command, &[n]), wait)
            .await
            .unwrap();
        assert_eq!(reply, Reply::Ok(vec![n]), "request {n} after the panic");
    }
    nats.publish(envelope("Fine", MessageKind::Event, b"{}"))
        .await
        .unwrap();
    common::settled(&nats, &service, "Fine", "the event, on its second delivery").await;
    assert_eq!(
        inbound.events.load(Ordering::SeqCst),
        2,
        "given back, then handled"
    );
    eventually("the first observation", PATIENCE, || {
        inbound.observed.load(Ordering::SeqCst) >= 1
    })
    .await;
    nats.publish(envelope("Fine", MessageKind::Event, b"{}"))
        .await
        .unwrap();
    eventually("observing goes on after a panic", PATIENCE, || {
        inbound.observed.load(Ordering::SeqCst) >= 2
    })
    .await;
    serving.shutdown().await;
}
