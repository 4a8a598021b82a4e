//! Sagas over a transport (the reproducer `nc_r01_saga_over_transport`): forward steps and
//! compensations handled by other applications, which see the saga's ids and headers; a
//! step's message ids kept across lost replies, compensation retries and a resume elsewhere,
//! so `Idempotency` where it is handled runs it once; a step nobody serves fails the saga,
//! which undoes what it did.

/// The `saga` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_saga {
    (tests) => {
        $crate::__catga_conformance_tests!(
            steps_elsewhere_complete,
            compensations_elsewhere_run_in_reverse_and_one_failing_is_kept_once,
            lost_replies_and_a_resume_elsewhere_run_each_handler_once,
            a_step_nobody_serves_fails_and_the_steps_before_it_are_compensated,
        );
    };
    () => {
        use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use $crate::prelude::*;
        use $crate::saga::{Saga, SagaError, SagaState, SagaStatus};
        use $crate::store::dead_letter::DeadLetterStore;
        use $crate::testkit::{Corner, Settings, TransportUnderTest};
        use $crate::transport::{Serving, Transport};
        use $crate::{ErrorKind, HandlerMeta, Layer};

        #[derive(Debug, thiserror::Error)]
        #[error("{0}")]
        pub struct Declined(pub &'static str);

        /// Safe to repeat behind `Idempotency`, and declared so: a `Retry` layer may ask again when
        /// its reply is lost.
        #[command(output = u64, name = "billing.charge", idempotent)]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Charge {
            pub cents: u64,
        }

        /// The same charge, not declared safe to repeat.
        #[command(output = u64, name = "billing.charge-once")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct ChargeOnce {
            pub cents: u64,
        }

        #[command(name = "billing.refund")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Refund {
            pub payment: u64,
        }

        #[command(output = u64, name = "stock.reserve")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Reserve {
            pub qty: u32,
        }

        #[command(name = "stock.release")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Release {
            pub reservation: u64,
        }

        #[command(name = "shipping.ship")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Ship {
            pub qty: u32,
        }

        /// Answers after ten minutes.
        #[command(name = "shipping.hold")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Hold;

        /// What a handler saw of one command it ran.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Seen {
            pub what: String,
            pub message_id: uuid::Uuid,
            pub correlation_id: uuid::Uuid,
            pub saga: Option<String>,
            pub step: Option<String>,
        }

        /// Every application's record of what it ran, shared so the order across them shows.
        #[derive(Default)]
        pub struct Ledger {
            seen: Mutex<Vec<Seen>>,
            /// Payments are numbered 7, 8, … so a repeated reply shows where it came from.
            payments: AtomicU64,
            pub shipping_fails: AtomicBool,
            pub refund_broken: AtomicBool,
        }

        impl Ledger {
            fn note(&self, what: String, ctx: &Context) {
                self.seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Seen {
                        what,
                        message_id: ctx.message_id(),
                        correlation_id: ctx.correlation_id(),
                        saga: ctx.header("catga-saga").map(str::to_string),
                        step: ctx.header("catga-saga-step").map(str::to_string),
                    });
            }

            pub fn seen(&self) -> Vec<Seen> {
                self.seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }

            pub fn log(&self) -> Vec<String> {
                self.seen().into_iter().map(|s| s.what).collect()
            }

            /// The message ids `what` ran for, in order.
            pub fn runs_of(&self, what: &str) -> Vec<uuid::Uuid> {
                self.seen()
                    .into_iter()
                    .filter(|s| s.what == what)
                    .map(|s| s.message_id)
                    .collect()
            }
        }

        pub mod saga_billing {
            use super::*;

            #[handler]
            impl Ledger {
                async fn charge(&self, cmd: Charge, ctx: &Context) -> Result<u64, Declined> {
                    self.note(format!("charge {}", cmd.cents), ctx);
                    Ok(7 + self.payments.fetch_add(1, Ordering::SeqCst))
                }

                async fn charge_once(
                    &self,
                    cmd: ChargeOnce,
                    ctx: &Context,
                ) -> Result<u64, Declined> {
                    self.note(format!("charge {}", cmd.cents), ctx);
                    Ok(7 + self.payments.fetch_add(1, Ordering::SeqCst))
                }

                async fn refund(&self, cmd: Refund, ctx: &Context) -> Result<(), Declined> {
                    self.note(format!("refund {}", cmd.payment), ctx);
                    if self.refund_broken.load(Ordering::SeqCst) {
                        return Err(Declined("bank down"));
                    }
                    Ok(())
                }
            }
        }

        pub mod saga_stock {
            use super::*;

            #[handler]
            impl Ledger {
                async fn reserve(&self, cmd: Reserve, ctx: &Context) -> Result<u64, Declined> {
                    self.note(format!("reserve {}", cmd.qty), ctx);
                    Ok(40 + u64::from(cmd.qty))
                }

                async fn release(&self, cmd: Release, ctx: &Context) -> Result<(), Declined> {
                    self.note(format!("release {}", cmd.reservation), ctx);
                    Ok(())
                }
            }
        }

        pub mod saga_shipping {
            use super::*;

            #[handler]
            impl Ledger {
                async fn ship(&self, cmd: Ship, ctx: &Context) -> Result<(), Declined> {
                    self.note(format!("ship {}", cmd.qty), ctx);
                    if self.shipping_fails.load(Ordering::SeqCst) {
                        return Err(Declined("no courier"));
                    }
                    Ok(())
                }

                async fn hold(&self, _cmd: Hold) -> Result<(), Declined> {
                    // Not forever: shutting the service down waits for what it is handling.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    Ok(())
                }
            }
        }

        pub fn is_billing(h: &HandlerMeta) -> bool {
            h.name.contains("::saga_billing::")
        }

        pub fn is_shipping(h: &HandlerMeta) -> bool {
            h.name.contains("::saga_shipping::")
        }

        pub fn is_stock(h: &HandlerMeta) -> bool {
            h.name.contains("::saga_stock::")
        }

        /// Loses the replies of the next successful dispatches of some messages (the handler ran;
        /// the caller sees a timeout, as when a reply is lost on the way back): `(name, how many)`.
        #[derive(Clone, Default)]
        pub struct LoseReplies {
            plan: Arc<Vec<(&'static str, AtomicU32)>>,
            passed: Arc<Mutex<Vec<&'static str>>>,
        }

        impl LoseReplies {
            pub fn new(plan: &[(&'static str, u32)]) -> Self {
                LoseReplies {
                    plan: Arc::new(
                        plan.iter()
                            .map(|(name, left)| (*name, AtomicU32::new(*left)))
                            .collect(),
                    ),
                    passed: Arc::default(),
                }
            }

            /// How many dispatches of `name` passed through.
            pub fn passed(&self, name: &str) -> usize {
                self.passed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .iter()
                    .filter(|n| **n == name)
                    .count()
            }
        }

        impl Behavior for LoseReplies {
            async fn handle<P: Payload, N: Next<P>>(
                &self,
                msg: P,
                _ctx: &Context,
                next: N,
            ) -> Result<P::Output, Error> {
                let name = msg.info().name();
                let result = next.run(msg).await;
                self.passed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(name);
                let lose = self.plan.iter().any(|(only, left)| {
                    *only == name
                        && left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                });
                if result.is_ok() && lose {
                    return Err(ErrorKind::Timeout {
                        message: name,
                        after: None,
                    }
                    .into());
                }
                result
            }
        }

        /// A service on `transport` running only the handlers `keep` accepts, behind `lose` and
        /// `Idempotency`.
        pub fn service(
            transport: impl Transport,
            ledger: &Arc<Ledger>,
            name: &str,
            keep: fn(&HandlerMeta) -> bool,
            lose: &LoseReplies,
        ) -> Catga<impl Layer> {
            Catga::builder()
                .state_arc(ledger.clone())
                .transport(transport)
                .service(name)
                .handlers(keep)
                .layer(lose.clone())
                .layer(Idempotency::default())
                .build()
                .expect("build the application")
        }

        /// The service that runs the saga: it handles the stock commands itself, and retries.
        pub fn front(transport: impl Transport, ledger: &Arc<Ledger>) -> Catga<impl Layer> {
            Catga::builder()
                .state_arc(ledger.clone())
                .transport(transport)
                .service("front")
                .handlers(is_stock)
                .layer(Retry::exponential(3).base_delay(Duration::from_millis(20)))
                .request_timeout(Duration::from_secs(10))
                .build()
                .expect("build the application")
        }

        pub struct Order;

        /// Reserve here, charge in billing, ship in shipping.
        pub fn checkout() -> Saga<Order> {
            Saga::builder("checkout")
                .step(
                    "reserve",
                    |_: &Order| Reserve { qty: 2 },
                    |_, reservation| Release { reservation },
                )
                .step(
                    "charge",
                    |_: &Order| Charge { cents: 900 },
                    |_, payment| Refund { payment },
                )
                .last_step("ship", |_: &Order| Ship { qty: 2 })
                .compensation_retries(3, Duration::from_millis(20))
                .build()
                .expect("build the application")
        }

        /// Billing and shipping serving on connections of their own, behind `lose`.
        async fn serve_billing_and_shipping(
            corner: &impl Corner,
            ledger: &Arc<Ledger>,
            lose: &LoseReplies,
        ) -> Vec<Serving> {
            let billing = service(corner.connect().await, ledger, "billing", is_billing, lose);
            let shipping = service(
                corner.connect().await,
                ledger,
                "shipping",
                is_shipping,
                lose,
            );
            vec![
                billing.serve().await.expect("serve"),
                shipping.serve().await.expect("serve"),
            ]
        }

        async fn stop(serving: Vec<Serving>) {
            for s in serving {
                s.shutdown().await;
            }
        }

        /// Every step runs in order, two of them in other services, which see the saga's ids
        /// and headers; the reply of a remote step is kept in the state.
        pub async fn steps_elsewhere_complete<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("saga_completes", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            let serving =
                serve_billing_and_shipping(&corner, &ledger, &LoseReplies::default()).await;
            let saga = checkout();
            let mut state = saga.start();
            saga.run(&front(corner.connect().await, &ledger), &Order, &mut state)
                .await
                .unwrap();
            assert_eq!(state.status, SagaStatus::Completed);
            assert_eq!(state.completed[1].output, b"7", "billing's reply");
            let expected: Vec<Seen> = [
                ("reserve 2", "reserve"),
                ("charge 900", "charge"),
                ("ship 2", "ship"),
            ]
            .iter()
            .enumerate()
            .map(|(index, (what, step))| Seen {
                what: what.to_string(),
                message_id: state.forward_message_id(index),
                correlation_id: state.id,
                saga: Some("checkout".to_string()),
                step: Some(step.to_string()),
            })
            .collect();
            assert_eq!(
                ledger.seen(),
                expected,
                "ids and headers reach every handler"
            );
            stop(serving).await;
        }

        /// A step fails elsewhere; the completed ones are undone in reverse, here and
        /// elsewhere. A compensation that keeps failing is tried three times under one message
        /// id, kept once, and replayed later to the service that handles it.
        pub async fn compensations_elsewhere_run_in_reverse_and_one_failing_is_kept_once<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("saga_compensates", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            ledger.shipping_fails.store(true, Ordering::SeqCst);
            ledger.refund_broken.store(true, Ordering::SeqCst);
            let serving =
                serve_billing_and_shipping(&corner, &ledger, &LoseReplies::default()).await;
            let front = front(corner.connect().await, &ledger);
            let saga = checkout();
            let mut state = saga.start();
            let err = saga.run(&front, &Order, &mut state).await.unwrap_err();
            assert!(
                matches!(err, SagaError::CompensationFailed { failed: 1, .. }),
                "{err}"
            );
            assert_eq!(state.failure.as_ref().and_then(|f| f.index), Some(2));
            assert_eq!(
                ledger.log(),
                [
                    "reserve 2",  // here
                    "charge 900", // billing
                    "ship 2",     // shipping: fails
                    "refund 7",   // billing, from the charge's reply: fails, three times
                    "refund 7",
                    "refund 7",
                    "release 42" // here, from the reservation's reply
                ]
            );
            assert_eq!(
                ledger.runs_of("refund 7"),
                [state.compensation_message_id(1); 3]
            );
            assert_eq!(
                ledger.runs_of("release 42"),
                [state.compensation_message_id(0)]
            );

            let kept = front
                .dead_letters()
                .list(10)
                .await
                .expect("read the dead letters");
            assert_eq!(kept.len(), 1, "{kept:?}");
            assert_eq!(kept[0].message, "billing.refund");
            assert_eq!(kept[0].message_id, state.compensation_message_id(1));
            ledger.refund_broken.store(false, Ordering::SeqCst);
            front
                .replay_dead_letter(front.dead_letters(), kept[0].id)
                .await
                .unwrap();
            let replayed = ledger.seen().pop().unwrap();
            assert_eq!(replayed.what, "refund 7", "billing handled the replay");
            assert_eq!(replayed.message_id, state.compensation_message_id(1));
            assert_eq!(replayed.step.as_deref(), Some("charge"));
            assert_eq!(
                front
                    .dead_letters()
                    .count()
                    .await
                    .expect("read the dead letters"),
                0
            );
            stop(serving).await;
        }

        /// Billing loses the charge's first reply and the refund's first two: the front's
        /// `Retry` asks for the charge again and the saga retries the refund, each time under
        /// the step's message id, and billing's `Idempotency` runs each once. Another front
        /// instance resuming from the state stored before the charge was recorded runs nothing
        /// twice either.
        pub async fn lost_replies_and_a_resume_elsewhere_run_each_handler_once<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("saga_lost_replies", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            ledger.shipping_fails.store(true, Ordering::SeqCst);
            let lose = LoseReplies::new(&[("billing.charge", 1), ("billing.refund", 2)]);
            let serving = serve_billing_and_shipping(&corner, &ledger, &lose).await;
            let saga = checkout();
            let mut stored: Vec<SagaState> = Vec::new();
            let mut state = saga.start();
            saga.run_observed(
                &front(corner.connect().await, &ledger),
                &Order,
                &mut state,
                |s| stored.push(s.clone()),
            )
            .await
            .unwrap_err();
            assert_eq!(state.status, SagaStatus::Compensated);
            assert_eq!(
                lose.passed("billing.charge"),
                2,
                "the charge was asked twice"
            );
            assert_eq!(
                lose.passed("billing.refund"),
                3,
                "the refund was tried three times"
            );
            assert_eq!(ledger.runs_of("charge 900"), [state.forward_message_id(1)]);
            assert_eq!(
                ledger.runs_of("refund 7"),
                [state.compensation_message_id(1)]
            );

            let mut resumed = stored.iter().find(|s| s.next_step == 1).cloned().unwrap();
            let mut charged = None;
            saga.run_observed(
                &front(corner.connect().await, &ledger),
                &Order,
                &mut resumed,
                |s| {
                    if let Some(step) = s.completed.get(1) {
                        charged = Some(step.output.clone());
                    }
                },
            )
            .await
            .unwrap_err();
            assert_eq!(resumed.status, SagaStatus::Compensated);
            assert_eq!(charged.as_deref(), Some(&b"7"[..]), "the first reply");
            assert_eq!(ledger.runs_of("charge 900").len(), 1, "still charged once");
            assert_eq!(ledger.runs_of("refund 7").len(), 1, "still refunded once");
            stop(serving).await;
        }

        /// Only billing serves: the last step finds nobody (`transport`), and the steps before
        /// it are undone, here and in billing.
        pub async fn a_step_nobody_serves_fails_and_the_steps_before_it_are_compensated<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("saga_nobody_serves", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            let billing = service(
                corner.connect().await,
                &ledger,
                "billing",
                is_billing,
                &LoseReplies::default(),
            );
            let serving = billing.serve().await.expect("serve");
            let saga = checkout();
            let mut state = saga.start();
            let err = saga
                .run(&front(corner.connect().await, &ledger), &Order, &mut state)
                .await
                .unwrap_err();
            let SagaError::Compensated { failure, .. } = &err else {
                panic!("unexpected {err}");
            };
            assert_eq!(
                (failure.step.as_str(), failure.code.as_str()),
                ("ship", "transport")
            );
            assert_eq!(
                ledger.log(),
                ["reserve 2", "charge 900", "refund 7", "release 42"]
            );
            serving.shutdown().await;
        }
    };
}
