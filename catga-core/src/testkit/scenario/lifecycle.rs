//! Stopped means stopped (p14c): once `Serving::shutdown()` returns, that instance takes
//! nothing more, events nor requests, even with redeliveries in flight when it stopped; what
//! it had taken was handled and settled, so the other instance of the service handles
//! everything after, each event exactly once.

/// The `lifecycle` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_lifecycle {
    (tests) => {
        $crate::__catga_conformance_tests!(
            after_shutdown_returns_a_stopped_instance_takes_nothing,
            a_stopped_instance_takes_nothing_more_and_the_other_takes_everything_once,
        );
    };
    () => {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use $crate::prelude::*;
        use $crate::testkit::{Corner as _, Settings, TransportUnderTest, eventually, settled};
        use $crate::transport::Transport;

        #[derive(Debug, thiserror::Error)]
        #[error("busy")]
        pub struct Busy;

        impl Retryable for Busy {
            fn is_retryable(&self) -> bool {
                true
            }
        }

        #[event(name = "lifecycle.round")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Round {
            pub n: u32,
        }

        #[event(name = "lifecycle.work")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Work {
            pub n: u64,
        }

        #[command(output = u64, name = "lifecycle.do")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Do {
            pub n: u64,
        }

        /// Which instance handled which rounds, and how many failures are left to inject.
        #[derive(Default)]
        pub struct Log {
            handled: Mutex<Vec<(u32, u32)>>,
            fail: AtomicU32,
        }

        impl Log {
            fn handled(&self) -> Vec<(u32, u32)> {
                self.handled.lock().unwrap().clone()
            }
        }

        /// This instance's tag.
        pub struct Tag(pub u32);

        /// What one instance of the workers did.
        #[derive(Default)]
        pub struct Seen {
            work: Mutex<HashMap<u64, u32>>,
            done: AtomicU32,
        }

        impl Seen {
            fn work(&self) -> HashMap<u64, u32> {
                self.work.lock().unwrap().clone()
            }

            fn total(&self) -> u32 {
                self.work().values().sum()
            }
        }

        pub mod lifecycle_rounds {
            use super::*;

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
        }

        pub mod lifecycle_workers {
            use super::*;

            #[handler]
            impl Seen {
                async fn on_work(&self, event: &Work) -> Result<(), Busy> {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    *self
                        .work
                        .lock()
                        .map_err(|_| Busy)?
                        .entry(event.n)
                        .or_default() += 1;
                    Ok(())
                }

                async fn run(&self, cmd: Do) -> Result<u64, Busy> {
                    self.done.fetch_add(1, Ordering::SeqCst);
                    Ok(cmd.n)
                }
            }
        }

        fn sender(transport: impl Transport) -> Catga {
            Catga::builder()
                .transport(transport)
                .service("producer")
                .handlers(|_| false)
                .request_timeout(Duration::from_secs(10))
                .build()
                .expect("build the application")
        }

        /// Forty services, one instance each, started and stopped in turn; every other round
        /// fails twice first, so redeliveries are in flight when its instance stops. Each
        /// round reaches only its own service, and an event published after every instance
        /// stopped is taken by none.
        pub async fn after_shutdown_returns_a_stopped_instance_takes_nothing<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let settings = Settings {
                max_deliveries: 3,
                redelivery_delay: Duration::from_millis(5),
                ..Settings::default()
            };
            let Some(corner) = kit.open("stopped_takes_nothing", &settings).await else {
                return;
            };
            let keeps = corner.capabilities().keeps_events_for_stopped_services;
            let log = Arc::new(Log::default());
            let producer = sender(corner.connect().await);
            for n in 0..40u32 {
                let service = format!("svc{n}");
                let app = Catga::builder()
                    .transport(corner.connect().await)
                    .service(&service)
                    .state(Tag(n))
                    .state_arc(log.clone())
                    .handlers(|h| h.name.contains("::lifecycle_rounds::"))
                    .build()
                    .expect("build the application");
                let serving = app.serve().await.expect("serve");
                log.fail
                    .store(if n % 2 == 0 { 2 } else { 0 }, Ordering::SeqCst);
                producer.publish(Round { n }).await.expect("publish");
                let want = if n % 2 == 0 { 3 } else { 1 };
                eventually(&format!("round {n} handled {want} times"), || async {
                    log.handled().iter().filter(|(r, _)| *r == n).count() >= want
                })
                .await;
                serving.shutdown().await;
                if !keeps {
                    let left = corner.unsettled(&service, "lifecycle.round").await;
                    assert!(
                        matches!(left, None | Some(0)),
                        "a stopped service keeps no queue: {left:?}"
                    );
                }
            }
            // Published after every instance stopped: nobody may take it.
            producer.publish(Round { n: 99 }).await.expect("publish");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let handled = log.handled();
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

        /// Two instances share the work; one stops while events flow. It takes no event and
        /// no request after `shutdown()` returned; the other handles everything after, and
        /// every event runs exactly once between them.
        pub async fn a_stopped_instance_takes_nothing_more_and_the_other_takes_everything_once<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("stopped_mid_stream", &Settings::default()).await else {
                return;
            };
            let instance = |transport| {
                let seen = Arc::new(Seen::default());
                let app = Catga::builder()
                    .state_arc(seen.clone())
                    .transport(transport)
                    .service("workers")
                    .handlers(|h| h.name.contains("::lifecycle_workers::"))
                    .build()
                    .expect("build the application");
                (app, seen)
            };
            let (a, a_seen) = instance(corner.connect().await);
            let (b, b_seen) = instance(corner.connect().await);
            let a_serving = a.serve().await.expect("serve");
            let b_serving = b.serve().await.expect("serve");
            let sender = Arc::new(sender(corner.connect().await));
            // Both take a share first.
            for n in 0..40 {
                sender.publish(Work { n }).await.expect("publish");
            }
            eventually("the first 40", || async {
                a_seen.total() + b_seen.total() == 40
            })
            .await;

            // Events flow while A stops.
            const N: u64 = 440;
            let publishing = {
                let sender = sender.clone();
                tokio::spawn(async move {
                    for n in 40..N {
                        sender.publish(Work { n }).await.expect("publish");
                    }
                })
            };
            let a_before = a_seen.total();
            eventually("A takes a share of the stream", || async {
                a_seen.total() > a_before + 10
            })
            .await;
            a_serving.shutdown().await;
            let a_at_stop = a_seen.work();
            publishing.await.unwrap();
            for n in 0..100 {
                assert_eq!(sender.send(Do { n }).await.unwrap(), n);
            }
            eventually("every event is handled", || async {
                (0..N).all(|n| a_seen.work().contains_key(&n) || b_seen.work().contains_key(&n))
            })
            .await;
            settled(
                &corner,
                "workers",
                "lifecycle.work",
                "everything acknowledged",
            )
            .await;
            // Give a straggler every chance to show.
            tokio::time::sleep(Duration::from_millis(300)).await;

            assert_eq!(
                a_seen.work(),
                a_at_stop,
                "A took nothing after shutdown returned"
            );
            assert_eq!(a_seen.done.load(Ordering::SeqCst), 0, "nor any request");
            assert_eq!(b_seen.done.load(Ordering::SeqCst), 100);
            let (a_work, b_work) = (a_seen.work(), b_seen.work());
            for n in 0..N {
                let runs = a_work.get(&n).unwrap_or(&0) + b_work.get(&n).unwrap_or(&0);
                assert_eq!(runs, 1, "event {n} ran {runs} times");
            }
            b_serving.shutdown().await;
        }
    };
}
