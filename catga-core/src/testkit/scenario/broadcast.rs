//! Every instance sees what invalidates its state (`p08_cache_multi_instance`): two instances
//! of a service cache a query that an event invalidates; a third application publishes the
//! event; both instances answer fresh, whether or not the service handles the event itself
//! (its handler runs on one instance per event, the service's share; the invalidation
//! reaches every instance).

/// The `broadcast` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_broadcast {
    (tests) => {
        $crate::__catga_conformance_tests!(
            every_instance_drops_its_cache_when_the_service_handles_the_event,
            every_instance_drops_its_cache_when_the_service_does_not_handle_the_event,
        );
    };
    () => {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::Duration;

        use $crate::behavior::Caching;
        use $crate::prelude::*;
        use $crate::testkit::{Corner as _, PATIENCE, Settings, TransportUnderTest, eventually};
        use $crate::transport::Transport;

        #[event(name = "broadcast.adjusted")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Adjusted {
            pub sku: u64,
        }

        #[query(output = u64, cache_ttl = "30s", invalidated_by(Adjusted), name = "broadcast.get")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct GetStock {
            pub sku: u64,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("never")]
        pub struct Never;

        /// The stock, as a database both instances read would hold it.
        #[derive(Default)]
        pub struct Stock {
            level: AtomicU64,
            adjustments: AtomicU64,
        }

        pub mod broadcast_inventory {
            use super::*;

            #[handler]
            impl Stock {
                async fn get(&self, _query: GetStock) -> Result<u64, Never> {
                    Ok(self.level.load(Ordering::SeqCst))
                }
            }
        }

        pub mod broadcast_adjustments {
            use super::*;

            #[handler]
            impl Stock {
                async fn adjusted(&self, _event: &Adjusted) -> Result<(), Never> {
                    self.adjustments.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        }

        fn instance(
            transport: impl Transport,
            stock: &Arc<Stock>,
            with_handler: bool,
        ) -> Catga<impl Layer> {
            Catga::builder()
                .state_arc(stock.clone())
                .transport(transport)
                .service("inventory")
                .handlers(move |h| {
                    h.name.contains("::broadcast_inventory::")
                        || (with_handler && h.name.contains("::broadcast_adjustments::"))
                })
                .layer(Caching::new())
                .build()
                .expect("build the application")
        }

        /// Three rounds: both instances cache the level, it changes, one still answers from
        /// its cache, a third application publishes the event, and both answer fresh.
        async fn both_instances_answer_fresh_after_a_third_app_publishes<K: TransportUnderTest>(
            kit: &K,
            test: &str,
            with_handler: bool,
        ) {
            let Some(corner) = kit.open(test, &Settings::default()).await else {
                return;
            };
            let stock = Arc::new(Stock::default());
            stock.level.store(1, Ordering::SeqCst);
            let a = instance(corner.connect().await, &stock, with_handler);
            let b = instance(corner.connect().await, &stock, with_handler);
            let serving = [
                a.serve().await.expect("serve"),
                b.serve().await.expect("serve"),
            ];
            let admin = Catga::builder()
                .transport(corner.connect().await)
                .service("admin")
                .handlers(|_| false)
                .build()
                .expect("build the application");

            for round in 2..5u64 {
                let cached = (
                    a.send(GetStock { sku: 1 }).await.unwrap(),
                    b.send(GetStock { sku: 1 }).await.unwrap(),
                );
                assert_eq!(cached, (round - 1, round - 1), "both cached the level");
                stock.level.store(round, Ordering::SeqCst);
                assert_eq!(
                    a.send(GetStock { sku: 1 }).await.unwrap(),
                    round - 1,
                    "served from the cache until invalidated"
                );
                admin.publish(Adjusted { sku: 1 }).await.expect("publish");
                let fresh = tokio::time::timeout(PATIENCE, async {
                    loop {
                        let answers = (
                            a.send(GetStock { sku: 1 }).await.unwrap(),
                            b.send(GetStock { sku: 1 }).await.unwrap(),
                        );
                        if answers == (round, round) {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
                assert!(
                    fresh.is_ok(),
                    "round {round}: both instances dropped their cached reply (service \
                     handles the event: {with_handler})"
                );
            }
            if with_handler {
                eventually("each adjustment handled", || async {
                    stock.adjustments.load(Ordering::SeqCst) >= 3
                })
                .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for serving in serving {
                serving.shutdown().await;
            }
            assert_eq!(
                stock.adjustments.load(Ordering::SeqCst),
                if with_handler { 3 } else { 0 },
                "the handler runs once per event for the service: only the invalidation \
                 reaches every instance"
            );
        }

        pub async fn every_instance_drops_its_cache_when_the_service_handles_the_event<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            both_instances_answer_fresh_after_a_third_app_publishes(kit, "broadcast_handler", true)
                .await;
        }

        pub async fn every_instance_drops_its_cache_when_the_service_does_not_handle_the_event<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            both_instances_answer_fresh_after_a_third_app_publishes(
                kit,
                "broadcast_no_handler",
                false,
            )
            .await;
        }
    };
}
