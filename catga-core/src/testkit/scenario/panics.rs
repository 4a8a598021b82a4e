//! A panic is a failure, never silence (rel_r2, rel_r5, p16): a request whose handler panics
//! (before its first `.await`, on the responder's inline first poll, or later) gets an error
//! reply at once, coded `panic`, not retryable and in doubt, is not run again, and the
//! service goes on answering; a panicking event is kept once and settled, and the consumer
//! goes on, even with one in-flight slot; a panic in the application side around the
//! handlers cannot end the transport's loops either.

/// The `panics` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_panics {
    (tests) => {
        $crate::__catga_conformance_tests!(
            a_panicking_request_is_answered_at_once_and_the_next_hundred_too,
            a_panicking_event_is_kept_once_and_the_consumer_goes_on_with_one_slot,
            a_panic_around_the_application_cannot_end_the_transports_loops,
        );
    };
    () => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use $crate::envelope::Envelope;
        use $crate::prelude::*;
        use $crate::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
        use $crate::testkit::{
            Corner as _, Settings, TransportUnderTest, dead_letters, eventually, settled,
        };
        use $crate::transport::{
            Delivery, Disposition, Inbound, Rejected, Reply, ServePlan, Transport,
        };
        use $crate::{MessageKind, WireFormat};

        #[command(output = u64, name = "panics.divide")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Divide {
            pub by: u64,
            /// Wait before dividing: the panic comes after the first `.await`.
            pub later: bool,
        }

        #[event(name = "panics.crash")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Crash {
            pub n: u32,
        }

        #[event(name = "panics.fine")]
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

        pub mod panics_calc {
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
                    panic!("a bug in the event handler");
                }

                async fn fine(&self, _event: &Fine) -> Result<(), Never> {
                    self.fine.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        }

        /// The service, with one in-flight slot, keeping failures in `letters`.
        fn calc(
            transport: impl Transport,
            letters: &MemoryDeadLetterStore,
        ) -> (Catga, Arc<Counts>) {
            let counts = Arc::new(Counts::default());
            let app = Catga::builder()
                .state_arc(counts.clone())
                .transport(transport)
                .service("calc")
                .handlers(|h| h.name.contains("::panics_calc::"))
                .dead_letters(letters.clone())
                .serve_max_in_flight(1)
                .build()
                .expect("build the application");
            (app, counts)
        }

        fn caller(transport: impl Transport, timeout: Duration) -> Catga {
            Catga::builder()
                .transport(transport)
                .service("caller")
                .handlers(|_| false)
                .request_timeout(timeout)
                .build()
                .expect("build the application")
        }

        /// The caller's error for a request whose handler panicked: the remote side's `panic`,
        /// not a timeout and not retryable.
        fn assert_panic_reply(result: Result<u64, Error>) {
            let error = result.expect_err("a panicking handler fails the request");
            match error.kind() {
                ErrorKind::Remote { .. } => {
                    assert_eq!(error.code(), "panic", "{error}");
                    assert!(
                        !error.is_retryable(),
                        "a panic is a bug: running it again would panic again: {error}"
                    );
                    assert!(error.is_in_doubt(), "{error}");
                }
                other => panic!("expected the remote side's `panic` reply, got {other:?}: {error}"),
            }
        }

        pub async fn a_panicking_request_is_answered_at_once_and_the_next_hundred_too<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("panicking_request", &Settings::default()).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let (app, counts) = calc(corner.connect().await, &letters);
            let serving = app.serve().await.expect("serve");
            // A timeout long enough that waiting for it would be seen: the reply is not one.
            let caller = caller(corner.connect().await, Duration::from_secs(60));

            let started = tokio::time::Instant::now();
            assert_panic_reply(
                caller
                    .send(Divide {
                        by: 0,
                        later: false,
                    })
                    .await,
            );
            let waited = started.elapsed();
            if kit.paused_clock() {
                assert_eq!(waited, Duration::ZERO, "answered at once");
            } else {
                assert!(
                    waited < Duration::from_secs(10),
                    "answered at once, not after the 60 s request timeout: {waited:?}"
                );
            }
            for by in 1..=100 {
                assert_eq!(
                    caller.send(Divide { by, later: false }).await.unwrap(),
                    100 / by,
                    "request {by} after the panic"
                );
            }
            assert_panic_reply(caller.send(Divide { by: 0, later: true }).await);
            assert_eq!(
                caller.send(Divide { by: 4, later: true }).await.unwrap(),
                25
            );
            assert_eq!(counts.divided.load(Ordering::SeqCst), 103);
            // Long enough for a transport to hand an unsettled request out again: none is.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            serving.shutdown().await;
            assert_eq!(
                counts.divided.load(Ordering::SeqCst),
                103,
                "the panicking requests ran once"
            );
            assert_eq!(
                letters.count().await.expect("read the dead letters"),
                0,
                "a request's failure goes back to its caller, not to the dead letters"
            );
        }

        pub async fn a_panicking_event_is_kept_once_and_the_consumer_goes_on_with_one_slot<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let takeover = Duration::from_secs(1);
            let settings = Settings {
                takeover: Some(takeover),
                ..Settings::default()
            };
            let Some(corner) = kit.open("panicking_event", &settings).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let counts = Arc::new(Counts::default());
            let app = Catga::builder()
                .state_arc(counts.clone())
                .transport(corner.connect().await)
                .service("calc")
                .handlers(|h| h.name.contains("::panics_calc::"))
                .layer(DeadLetter::new(letters.clone()))
                .dead_letters(letters.clone())
                .serve_max_in_flight(1)
                .build()
                .expect("build the application");
            let serving = app.serve().await.expect("serve");
            let publisher = caller(corner.connect().await, Duration::from_secs(5));

            publisher.publish(Crash { n: 1 }).await.expect("publish");
            publisher.publish(Crash { n: 2 }).await.expect("publish");
            for n in 0..5 {
                publisher.publish(Fine { n }).await.expect("publish");
            }
            eventually(
                "the good events after two panics (the one in-flight slot was not leaked)",
                || async { counts.fine.load(Ordering::SeqCst) == 5 },
            )
            .await;
            let kept = dead_letters(&letters, 2, "both panicking events kept").await;
            settled(
                &corner,
                "calc",
                "panics.crash",
                "the panicking events settled",
            )
            .await;
            // Longer than the takeover time: a delivery left unsettled would be back by now.
            tokio::time::sleep(takeover * 3).await;
            serving.shutdown().await;
            let kept_after = letters.list(10).await.expect("read the dead letters");
            assert_eq!(kept_after.len(), 2, "each kept once: {kept_after:?}");
            assert!(
                kept.iter()
                    .all(|r| r.code == "panic" && r.message == "panics.crash" && r.attempts == 1),
                "{kept:?}"
            );
            assert!(
                kept.iter()
                    .all(|r| r.error.contains("a bug in the event handler")),
                "{kept:?}"
            );
            assert_eq!(
                counts.crashes.load(Ordering::SeqCst),
                2,
                "a panic is not retryable: each panicking event ran once"
            );
        }

        /// An application side that panics where catga's never does: the transport's own
        /// guard keeps the subscription and the consumer alive (defence in depth: catga
        /// contains its handlers' panics inside `Inbound`; this is what stands if anything
        /// else unwinds).
        struct PanickingInbound {
            events: AtomicU32,
            observed: AtomicU32,
        }

        impl Inbound for PanickingInbound {
            fn event(
                &self,
                _route: &str,
                _envelope: Envelope,
                delivery: Delivery,
            ) -> futures::future::BoxFuture<'static, Disposition> {
                self.events.fetch_add(1, Ordering::SeqCst);
                // The first delivery unwinds out of the application; the next one is handled.
                assert!(delivery.attempt > 1, "a panic while handing over an event");
                Box::pin(async { Disposition::Ack })
            }

            fn request(
                &self,
                _route: &str,
                envelope: Envelope,
                _delivery: Delivery,
            ) -> futures::future::BoxFuture<'static, Reply> {
                assert!(
                    envelope.payload != b"boom",
                    "a panic while handing over a request"
                );
                Box::pin(async move { Reply::Ok(envelope.payload) })
            }

            fn reject(
                &self,
                _rejected: Rejected,
            ) -> futures::future::BoxFuture<'static, Disposition> {
                Box::pin(async { Disposition::Terminate })
            }

            fn observe(&self, _name: &str) {
                self.observed.fetch_add(1, Ordering::SeqCst);
                panic!("a panic while reporting an observed event");
            }
        }

        pub async fn a_panic_around_the_application_cannot_end_the_transports_loops<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit
                .open("panic_around_the_application", &Settings::default())
                .await
            else {
                return;
            };
            let transport = corner.connect().await;
            let inbound = Arc::new(PanickingInbound {
                events: AtomicU32::new(0),
                observed: AtomicU32::new(0),
            });
            let plan = ServePlan {
                service: "raw".to_string(),
                events: vec!["panics.raw-fine".to_string()],
                requests: vec!["panics.raw-echo".to_string()],
                max_in_flight: 1,
                observe: vec!["panics.raw-fine".to_string()],
            };
            let serving = transport.serve(plan, inbound.clone()).await.unwrap();
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
            let boom = transport
                .request(
                    envelope("panics.raw-echo", MessageKind::Command, b"boom"),
                    wait,
                )
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
                let reply = transport
                    .request(
                        envelope("panics.raw-echo", MessageKind::Command, &[n]),
                        wait,
                    )
                    .await
                    .unwrap();
                assert_eq!(reply, Reply::Ok(vec![n]), "request {n} after the panic");
            }
            transport
                .publish(envelope("panics.raw-fine", MessageKind::Event, b"{}"))
                .await
                .expect("publish");
            eventually("the event, on its second delivery", || async {
                inbound.events.load(Ordering::SeqCst) >= 2
            })
            .await;
            settled(&corner, "raw", "panics.raw-fine", "the event settled").await;
            assert_eq!(
                inbound.events.load(Ordering::SeqCst),
                2,
                "given back, then handled"
            );
            eventually("the first observation", || async {
                inbound.observed.load(Ordering::SeqCst) >= 1
            })
            .await;
            transport
                .publish(envelope("panics.raw-fine", MessageKind::Event, b"{}"))
                .await
                .expect("publish");
            eventually("observing goes on after a panic", || async {
                inbound.observed.load(Ordering::SeqCst) >= 2
            })
            .await;
            serving.shutdown().await;
        }
    };
}
