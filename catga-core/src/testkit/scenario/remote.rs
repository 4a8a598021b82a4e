//! What a request that crosses a transport promises:
//!
//! - a command that committed returns its reply, whatever its follow-up events meet later
//!   (the reproducers `p03_followups_on_failure` and `nc_r03_follow_up_failure`): a follow-up
//!   handler in another service that keeps failing is kept there once per event, a follow-up
//!   the transport refuses is kept in the publishing application's store, and neither turns
//!   the caller's `Ok` into a retryable error that would run the command again;
//! - a remote command that timed out may have run, so the caller's `Retry` runs it again only
//!   when it is declared `idempotent` (`nc_r06_idempotent_flag`, `nc_r07_retry_non_idempotent`);
//! - a request sent before its service runs is handled once, not lost and not run twice;
//! - an event is a fact, not a request: a publisher's deadline bounds the publisher, not the
//!   subscribers (`rel_r4_deadline_event`); on a transport that keeps events for a service
//!   that is down, all of them are handled after an outage longer than that deadline.

/// The `remote` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_remote {
    (tests) => {
        $crate::__catga_conformance_tests!(
            follow_up_failures_elsewhere_leave_the_reply,
            a_refused_follow_up_is_kept_by_its_publisher,
            a_remote_command_that_timed_out_runs_again_only_if_idempotent,
            a_request_sent_before_its_service_runs_is_handled_once,
            events_outlive_their_publishers_deadline,
        );
    };
    () => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::Duration;

        use $crate::prelude::*;
        use $crate::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
        use $crate::testkit::{Corner as _, Settings, TransportUnderTest, eventually, settled};
        use $crate::transport::{Serving, Transport};

        /// A failure worth retrying.
        #[derive(Debug, thiserror::Error)]
        #[error("the mail server is busy")]
        pub struct Busy;

        impl Retryable for Busy {
            fn is_retryable(&self) -> bool {
                true
            }
        }

        /// How often each handler started.
        #[derive(Default)]
        pub struct Ledger {
            pub commits: AtomicU32,
            pub mails: AtomicU32,
            pub charges: AtomicU32,
            pub captures: AtomicU32,
            pub shipped: AtomicU32,
        }

        fn count(n: &AtomicU32) -> u32 {
            n.load(Ordering::SeqCst)
        }

        /// Commits an order and announces it.
        #[command(output = u32, name = "remote.commit")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Commit {
            /// Bytes carried by the announcement (to make a transport refuse it).
            pub note_bytes: usize,
        }

        #[event(name = "remote.committed")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Committed {
            pub note: String,
        }

        /// Ships an order and announces it.
        #[command(output = u64, name = "remote.ship")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Ship {
            pub order: u64,
        }

        #[event(name = "remote.shipped")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Shipped {
            pub order: u64,
        }

        /// Not declared idempotent: charging twice charges twice.
        #[command(output = u32, name = "remote.charge-card")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct ChargeCard {
            pub cents: u32,
        }

        /// Declared safe to repeat; its first run is slow.
        #[command(output = u32, idempotent, name = "remote.capture")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Capture {
            pub cents: u32,
        }

        /// How long the slow handlers take: longer than the callers here wait.
        pub const SLOW: Duration = Duration::from_millis(600);
        /// How long the callers here wait for a reply.
        pub const WAIT: Duration = Duration::from_millis(200);

        pub mod remote_orders {
            use super::*;

            #[handler]
            async fn commit(cmd: Commit, ctx: &Context, ledger: &Ledger) -> Result<u32, Busy> {
                ledger.commits.fetch_add(1, Ordering::SeqCst);
                let note = "n".repeat(cmd.note_bytes);
                ctx.publish(Committed { note }).map_err(|_| Busy)?;
                Ok(42)
            }
        }

        pub mod remote_shipping {
            use super::*;

            #[handler]
            async fn ship(cmd: Ship, ctx: &Context) -> Result<u64, Busy> {
                ctx.publish(Shipped { order: cmd.order })
                    .map_err(|_| Busy)?;
                Ok(cmd.order)
            }
        }

        pub mod remote_tracking {
            use super::*;

            #[handler]
            async fn shipped(_event: &Shipped, ledger: &Ledger) -> Result<(), Busy> {
                // A database write.
                tokio::time::sleep(Duration::from_millis(5)).await;
                ledger.shipped.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }

        pub mod remote_mail {
            use super::*;

            #[handler]
            async fn committed(_event: &Committed, ledger: &Ledger) -> Result<(), Busy> {
                ledger.mails.fetch_add(1, Ordering::SeqCst);
                Err(Busy)
            }
        }

        pub mod remote_bank {
            use super::*;

            #[handler]
            async fn charge(cmd: ChargeCard, ledger: &Ledger) -> Result<u32, Busy> {
                ledger.charges.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(SLOW).await;
                Ok(cmd.cents)
            }

            #[handler]
            async fn capture(cmd: Capture, ledger: &Ledger) -> Result<u32, Busy> {
                if ledger.captures.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(SLOW).await;
                }
                Ok(cmd.cents)
            }
        }

        fn is_orders(h: &HandlerMeta) -> bool {
            h.name.contains("::remote_orders::")
        }

        fn is_mail(h: &HandlerMeta) -> bool {
            h.name.contains("::remote_mail::")
        }

        fn is_bank(h: &HandlerMeta) -> bool {
            h.name.contains("::remote_bank::")
        }

        fn is_shipping(h: &HandlerMeta) -> bool {
            h.name.contains("::remote_shipping::")
        }

        fn is_tracking(h: &HandlerMeta) -> bool {
            h.name.contains("::remote_tracking::")
        }

        /// A service on `transport` running the handlers `keep` accepts.
        async fn serve(
            transport: impl Transport,
            ledger: &Arc<Ledger>,
            service: &str,
            keep: fn(&HandlerMeta) -> bool,
            letters: &MemoryDeadLetterStore,
        ) -> Serving {
            Catga::builder()
                .state_arc(ledger.clone())
                .transport(transport)
                .service(service)
                .handlers(keep)
                .dead_letters(letters.clone())
                .build()
                .expect("build the application")
                .serve()
                .await
                .expect("serve")
        }

        /// A caller with no handlers, behind `Retry` and `Timeout` as the reproducers had it:
        /// each attempt waits at most `wait` (the deadline travels with the request).
        fn caller(transport: impl Transport, wait: Duration) -> Catga<impl Layer> {
            Catga::builder()
                .transport(transport)
                .service("front")
                .handlers(|_| false)
                .layer(Retry::exponential(3).base_delay(Duration::from_millis(20)))
                .layer(Timeout::new(wait))
                .build()
                .expect("build the application")
        }

        /// `p03` / `nc_r03` across a transport: the caller gets `Ok(42)` each time and the
        /// command runs once per send, even where the caller retries while `is_retryable()`;
        /// the mail service, whose handler always fails, keeps each announcement once in its
        /// store after the last delivery.
        pub async fn follow_up_failures_elsewhere_leave_the_reply<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("follow_up_failures", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            let order_letters = MemoryDeadLetterStore::new();
            let mail_letters = MemoryDeadLetterStore::new();
            let orders = serve(
                corner.connect().await,
                &ledger,
                "orders",
                is_orders,
                &order_letters,
            )
            .await;
            let mail = serve(
                corner.connect().await,
                &ledger,
                "mail",
                is_mail,
                &mail_letters,
            )
            .await;
            let front = caller(corner.connect().await, Duration::from_secs(10));

            assert_eq!(front.send(Commit { note_bytes: 1 }).await.unwrap(), 42);
            for _ in 0..3 {
                match front.send(Commit { note_bytes: 1 }).await {
                    Err(e) if e.is_retryable() => continue,
                    other => {
                        assert_eq!(other.unwrap(), 42);
                        break;
                    }
                }
            }
            assert_eq!(count(&ledger.commits), 2, "one run per send");
            eventually(
                "each announcement kept once by the mail service",
                || async { mail_letters.count().await.expect("read the dead letters") == 2 },
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let kept = mail_letters.list(10).await.expect("read the dead letters");
            assert_eq!(kept.len(), 2, "{kept:?}");
            assert!(
                kept.iter().all(|r| r.message == "remote.committed"),
                "{kept:?}"
            );
            assert!(count(&ledger.mails) >= 2);
            assert_eq!(
                order_letters.count().await.expect("read the dead letters"),
                0,
                "the publisher kept nothing"
            );
            orders.shutdown().await;
            mail.shutdown().await;
        }

        /// A follow-up the transport refuses (larger than it carries) is kept in the publishing
        /// application's store, and the committed command still returns its reply.
        pub async fn a_refused_follow_up_is_kept_by_its_publisher<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("refused_follow_up", &Settings::default()).await else {
                return;
            };
            let too_large = 2 * corner.capabilities().max_payload;
            let ledger = Arc::new(Ledger::default());
            let order_letters = MemoryDeadLetterStore::new();
            let orders = serve(
                corner.connect().await,
                &ledger,
                "orders",
                is_orders,
                &order_letters,
            )
            .await;
            let front = caller(corner.connect().await, Duration::from_secs(10));
            let reply = front.send(Commit {
                note_bytes: too_large,
            });
            assert_eq!(reply.await.unwrap(), 42);
            assert_eq!(count(&ledger.commits), 1);
            eventually("the refused announcement kept by its publisher", || async {
                order_letters.count().await.expect("read the dead letters") == 1
            })
            .await;
            let kept = order_letters.list(10).await.expect("read the dead letters");
            assert_eq!(kept[0].message, "remote.committed", "{kept:?}");
            assert!(
                kept[0]
                    .payload
                    .as_ref()
                    .is_some_and(|p| p.len() > too_large)
            );
            orders.shutdown().await;
        }

        /// `nc_r06` / `nc_r07` across a transport: the caller's request times out while the
        /// handler runs. Not declared idempotent: in doubt, not sent again, run once. Declared
        /// idempotent: sent again, and the repeat's reply is the caller's.
        pub async fn a_remote_command_that_timed_out_runs_again_only_if_idempotent<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("remote_in_doubt", &Settings::default()).await else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            let letters = MemoryDeadLetterStore::new();
            let bank = serve(corner.connect().await, &ledger, "bank", is_bank, &letters).await;
            let front = caller(corner.connect().await, WAIT);

            let err = front.send(ChargeCard { cents: 5 }).await.unwrap_err();
            assert!(err.is_in_doubt(), "{err}");
            assert!(
                err.is_retryable(),
                "a caller that knows better may retry: {err}"
            );
            tokio::time::sleep(SLOW * 2).await;
            assert_eq!(count(&ledger.charges), 1, "charged once, not three times");

            assert_eq!(front.send(Capture { cents: 7 }).await.unwrap(), 7);
            assert_eq!(
                count(&ledger.captures),
                2,
                "declared idempotent: sent again"
            );
            let kept = letters.list(10).await.expect("read the dead letters");
            assert!(kept.is_empty(), "{kept:?}");
            bank.shutdown().await;
        }

        /// A request sent before its service runs is handled once when the service starts:
        /// retried where nothing could take it (nothing ran), or waiting where the transport
        /// keeps it.
        pub async fn a_request_sent_before_its_service_runs_is_handled_once<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit
                .open("request_before_service", &Settings::default())
                .await
            else {
                return;
            };
            let ledger = Arc::new(Ledger::default());
            let letters = MemoryDeadLetterStore::new();
            let front = Catga::builder()
                .transport(corner.connect().await)
                .service("front")
                .handlers(|_| false)
                .layer(Retry::exponential(6).base_delay(Duration::from_millis(100)))
                .request_timeout(Duration::from_secs(10))
                .build()
                .expect("build the application");
            let late = corner.connect().await;
            let starting = {
                let ledger = ledger.clone();
                let letters = letters.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    serve(late, &ledger, "bank", is_bank, &letters).await
                })
            };
            let sent = tokio::time::Instant::now();
            let reply = front.send(ChargeCard { cents: 9 }).await;
            let bank = starting.await.unwrap();
            assert_eq!(reply.unwrap(), 9, "after {:?}", sent.elapsed());
            tokio::time::sleep(SLOW).await;
            assert_eq!(count(&ledger.charges), 1, "handled once");
            let kept = letters.list(10).await.expect("read the dead letters");
            assert!(kept.is_empty(), "{kept:?}");
            bank.shutdown().await;
        }

        /// `rel_r4`: events published under a deadline, and events a remote command queued
        /// with `ctx.publish` while its caller's timeout ran, while their subscriber is down
        /// for longer than that deadline (a deploy). A transport that keeps events for a
        /// stopped service hands all 40 to it when it is back, none acknowledged unhandled or
        /// set aside; one that keeps nothing for it (in memory) had nobody to give them to, and
        /// hands the subscriber only what is published once it is back.
        pub async fn events_outlive_their_publishers_deadline<K: TransportUnderTest>(kit: &K) {
            const DEADLINE: Duration = Duration::from_secs(1);
            let Some(corner) = kit
                .open("events_outlive_deadline", &Settings::default())
                .await
            else {
                return;
            };
            let keeps = corner.capabilities().keeps_events_for_stopped_services;
            let ledger = Arc::new(Ledger::default());
            let letters = MemoryDeadLetterStore::new();
            let tracking = Catga::builder()
                .state_arc(ledger.clone())
                .transport(corner.connect().await)
                .service("tracking")
                .handlers(is_tracking)
                .layer(DeadLetter::new(letters.clone()))
                .dead_letters(letters.clone())
                .build()
                .expect("build the application");
            // The durable consumer exists; then the service is down (a deploy).
            tracking.serve().await.expect("serve").shutdown().await;

            let shipping = Catga::builder()
                .transport(corner.connect().await)
                .service("shipping")
                .handlers(is_shipping)
                .build()
                .expect("build the application");
            let shipping_serving = shipping.serve().await.expect("serve");
            let front = caller(corner.connect().await, DEADLINE);
            for order in 0..20 {
                let ctx = Context::new().with_timeout(DEADLINE);
                shipping
                    .publish_with(Shipped { order }, ctx)
                    .await
                    .expect("publish");
            }
            for order in 20..40 {
                assert_eq!(front.send(Ship { order }).await.unwrap(), order);
            }
            // The outage outlasts every deadline.
            tokio::time::sleep(DEADLINE * 2).await;
            let serving = tracking.serve().await.expect("serve");
            if keeps {
                eventually("all 40 events handled", || async {
                    count(&ledger.shipped) >= 40
                })
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert_eq!(count(&ledger.shipped), 40, "handled 40/40");
                settled(
                    &corner,
                    "tracking",
                    "remote.shipped",
                    "every event acknowledged",
                )
                .await;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert_eq!(
                    count(&ledger.shipped),
                    0,
                    "nothing was kept for a service that was not running"
                );
                shipping
                    .publish(Shipped { order: 40 })
                    .await
                    .expect("publish");
                eventually("the event published once it was back", || async {
                    count(&ledger.shipped) == 1
                })
                .await;
            }
            assert_eq!(
                letters.count().await.expect("read the dead letters"),
                0,
                "none set aside"
            );
            serving.shutdown().await;
            shipping_serving.shutdown().await;
        }
    };
}
