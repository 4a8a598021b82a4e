//! Events across a transport: every service that handles an event gets it once, and the
//! instances of a service share it; an instance runs at most its in-flight limit of handlers;
//! shutting down waits for the events in flight and settles them; an event's deadline bounds
//! its publisher, not a subscriber that is busy for much longer.

/// The `events` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_events {
    (tests) => {
        $crate::__catga_conformance_tests!(
            an_event_reaches_every_service_once_and_instances_share_it,
            an_instance_runs_at_most_max_in_flight_handlers,
            shutdown_waits_for_events_in_flight_and_acknowledges_them,
            an_events_deadline_bounds_its_publisher_not_its_busy_subscriber,
        );
    };
    () => {
        use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use $crate::prelude::*;
        use $crate::store::dead_letter::{DeadLetterStore, MemoryDeadLetterStore};
        use $crate::testkit::{
            Corner as _, PATIENCE, Settings, TransportUnderTest, eventually, settled,
        };
        use $crate::transport::Transport;

        #[event(name = "events.order-placed")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct OrderPlaced {
            pub order: u64,
        }

        /// Waits until the test releases it.
        #[event(name = "events.slow")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Slow {
            pub order: u64,
        }

        /// A shipment: its handler is a database write that takes a while.
        #[event(name = "events.shipped")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Shipped {
            pub order: u64,
        }

        /// Publishes `Shipped` from a request whose caller set a deadline.
        #[command(name = "events.ship")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Ship {
            pub order: u64,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("try again later")]
        pub struct Busy;

        /// What one instance saw.
        #[derive(Default)]
        pub struct Seen {
            placed: Mutex<Vec<u64>>,
            running: AtomicUsize,
            most_running: AtomicUsize,
            started: AtomicU32,
            finished: AtomicU32,
            shipped: AtomicU32,
            release: tokio::sync::Notify,
        }

        impl Seen {
            fn sorted(&self) -> Vec<u64> {
                let mut placed = self.placed.lock().unwrap().clone();
                placed.sort_unstable();
                placed
            }
        }

        pub mod events_shipping {
            use super::*;

            #[handler]
            impl Seen {
                async fn placed(&self, event: &OrderPlaced) -> Result<(), Busy> {
                    let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                    self.most_running.fetch_max(now, Ordering::SeqCst);
                    // Long enough for other events to arrive while this one runs.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    self.placed.lock().map_err(|_| Busy)?.push(event.order);
                    self.running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                }

                async fn slow(&self, _event: &Slow) -> Result<(), Busy> {
                    let released = self.release.notified();
                    self.started.fetch_add(1, Ordering::SeqCst);
                    released.await;
                    self.finished.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        }

        pub mod events_billing {
            use super::*;

            /// Billing's own list of placed orders.
            #[derive(Default)]
            pub struct Billed(pub Mutex<Vec<u64>>);

            #[handler]
            async fn bill(event: &OrderPlaced, billed: &Billed) -> Result<(), Busy> {
                billed.0.lock().map_err(|_| Busy)?.push(event.order);
                Ok(())
            }
        }

        pub mod events_tracking {
            use super::*;

            /// A database write that takes a while.
            #[handler]
            async fn on_shipped(_event: &Shipped, seen: &Seen) -> Result<(), Busy> {
                tokio::time::sleep(Duration::from_millis(50)).await;
                seen.shipped.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }

        pub mod events_orders {
            use super::*;

            #[handler]
            async fn ship(cmd: Ship, ctx: &Context) -> Result<(), Busy> {
                ctx.publish(Shipped { order: cmd.order }).map_err(|_| Busy)
            }
        }

        fn shipping(transport: impl Transport) -> (Catga, Arc<Seen>) {
            let seen = Arc::new(Seen::default());
            let app = Catga::builder()
                .state_arc(seen.clone())
                .transport(transport)
                .service("shipping")
                .handlers(|h| h.name.contains("::events_shipping::"))
                .build()
                .expect("build the application");
            (app, seen)
        }

        pub async fn an_event_reaches_every_service_once_and_instances_share_it<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("events_fan_out", &Settings::default()).await else {
                return;
            };
            let mut instances = Vec::new();
            let mut serving = Vec::new();
            for _ in 0..3 {
                let (app, seen) = shipping(corner.connect().await);
                serving.push(app.serve().await.expect("serve"));
                instances.push(seen);
            }
            let billed = Arc::new(events_billing::Billed::default());
            let billing = Catga::builder()
                .state_arc(billed.clone())
                .transport(corner.connect().await)
                .service("billing")
                .handlers(|h| h.name.contains("::events_billing::"))
                .build()
                .expect("build the application");
            serving.push(billing.serve().await.expect("serve"));

            let orders = Catga::builder()
                .transport(corner.connect().await)
                .handlers(|_| false)
                .build()
                .expect("build the application");
            // One at a time, then a burst.
            for order in 0..30 {
                orders
                    .publish(OrderPlaced { order })
                    .await
                    .expect("publish");
            }
            let published = futures::future::join_all(
                (30..60).map(|order| orders.publish(OrderPlaced { order })),
            )
            .await;
            assert!(published.iter().all(Result::is_ok), "{published:?}");

            let shipped = || {
                let mut all: Vec<u64> = instances.iter().flat_map(|s| s.sorted()).collect();
                all.sort_unstable();
                all
            };
            eventually("both services to handle all 60 events", || async {
                shipped().len() >= 60 && billed.0.lock().unwrap().len() >= 60
            })
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in serving {
                s.shutdown().await;
            }
            assert_eq!(
                shipped(),
                (0..60).collect::<Vec<_>>(),
                "the shipping instances handled each event once between them"
            );
            let mut billed_orders = billed.0.lock().unwrap().clone();
            billed_orders.sort_unstable();
            assert_eq!(
                billed_orders,
                (0..60).collect::<Vec<_>>(),
                "and billing, another service, too"
            );
            let shares: Vec<usize> = instances.iter().map(|s| s.sorted().len()).collect();
            if corner.capabilities().every_instance_shares_a_burst {
                assert!(
                    shares.iter().all(|&n| n > 0),
                    "every instance took a share of the events: {shares:?}"
                );
            } else {
                assert!(
                    shares.iter().filter(|&&n| n > 0).count() >= 2,
                    "the instances shared the events: {shares:?}"
                );
            }
        }

        pub async fn an_instance_runs_at_most_max_in_flight_handlers<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("events_in_flight", &Settings::default()).await else {
                return;
            };
            let seen = Arc::new(Seen::default());
            let app = Catga::builder()
                .state_arc(seen.clone())
                .transport(corner.connect().await)
                .service("shipping")
                .handlers(|h| h.name.contains("::events_shipping::"))
                .serve_max_in_flight(2)
                .build()
                .expect("build the application");
            let serving = app.serve().await.expect("serve");
            let published =
                futures::future::join_all((0..40).map(|order| app.publish(OrderPlaced { order })))
                    .await;
            assert!(published.iter().all(Result::is_ok));
            eventually("all 40 events", || async { seen.sorted().len() >= 40 }).await;
            let most = seen.most_running.load(Ordering::SeqCst);
            assert!(most <= 2, "{most} handlers ran at once; the limit is 2");
            assert_eq!(seen.sorted(), (0..40).collect::<Vec<_>>());
            serving.shutdown().await;
        }

        pub async fn shutdown_waits_for_events_in_flight_and_acknowledges_them<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("events_drain", &Settings::default()).await else {
                return;
            };
            let (app, seen) = shipping(corner.connect().await);
            let serving = app.serve().await.expect("serve");
            app.publish(Slow { order: 1 }).await.expect("publish");
            eventually("the handler to start", || async {
                seen.started.load(Ordering::SeqCst) == 1
            })
            .await;
            let stopping = tokio::spawn(serving.shutdown());
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !stopping.is_finished(),
                "shutdown must wait for the event in flight"
            );
            seen.release.notify_waiters();
            tokio::time::timeout(PATIENCE, stopping)
                .await
                .expect("shutdown finishes once the handler does")
                .unwrap();
            assert_eq!(seen.finished.load(Ordering::SeqCst), 1);
            let unsettled = corner.unsettled("shipping", "events.slow").await;
            assert!(
                matches!(unsettled, None | Some(0)),
                "acknowledged before shutdown returned: {unsettled:?} unsettled"
            );
        }

        /// One handler at a time, 50 ms each: the later events wait for the subscriber far
        /// past the 100 ms deadline their publishers set, whether published directly or by a
        /// request's handler; every one is handled, none kept as failed.
        pub async fn an_events_deadline_bounds_its_publisher_not_its_busy_subscriber<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("events_busy_deadline", &Settings::default()).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let seen = Arc::new(Seen::default());
            let tracking = Catga::builder()
                .state_arc(seen.clone())
                .transport(corner.connect().await)
                .service("tracking")
                .handlers(|h| h.name.contains("::events_tracking::"))
                .serve_max_in_flight(1)
                .layer(DeadLetter::new(letters.clone()))
                .dead_letters(letters.clone())
                .build()
                .expect("build the application");
            let serving = tracking.serve().await.expect("serve");
            let orders = Catga::builder()
                .transport(corner.connect().await)
                .service("orders")
                .handlers(|h| h.name.contains("::events_orders::"))
                .build()
                .expect("build the application");
            for order in 0..20 {
                let ctx = Context::new().with_timeout(Duration::from_millis(100));
                orders
                    .publish_with(Shipped { order }, ctx)
                    .await
                    .expect("publish");
            }
            for order in 20..40 {
                // `ctx.publish` inside a request whose caller set a timeout.
                let ctx = Context::new().with_timeout(Duration::from_millis(100));
                orders.send_with(Ship { order }, ctx).await.unwrap();
            }
            eventually("every event handled, 50 ms each, one at a time", || async {
                seen.shipped.load(Ordering::SeqCst) >= 40
            })
            .await;
            settled(&corner, "tracking", "events.shipped", "every event settled").await;
            assert_eq!(seen.shipped.load(Ordering::SeqCst), 40, "handled 40/40");
            assert_eq!(
                letters.count().await.expect("read the dead letters"),
                0,
                "none kept: none failed"
            );
            serving.shutdown().await;
        }
    };
}
