//! The delivery budget and the dead letters (p14, p14b, rel_r3, rel_r5): an event's handlers
//! run at most `max_deliveries` times, a `Retry` layer does not multiply that; one poison
//! event leaves exactly one dead letter, kept by a `DeadLetter` layer or else by the
//! application's store, saying which delivery failed; a failure that is not retryable is kept
//! at once; an event that succeeds on a later delivery leaves none; nothing is acknowledged
//! while the dead-letter store cannot keep its failure.

/// The `delivery` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_delivery {
    (tests) => {
        $crate::__catga_conformance_tests!(
            one_poison_event_leaves_exactly_one_dead_letter_and_retry_does_not_multiply_runs,
            without_a_dead_letter_layer_the_applications_store_keeps_the_final_failure,
            an_event_that_succeeds_on_a_later_delivery_leaves_no_dead_letter,
            a_failure_is_not_acknowledged_until_the_store_kept_it,
            a_failure_kept_after_the_last_delivery_still_says_what_failed,
        );
    };
    () => {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use $crate::BoxError;
        use $crate::prelude::*;
        use $crate::store::dead_letter::{
            DeadLetterRecord, DeadLetterStore, FailureStage, MemoryDeadLetterStore,
        };
        use $crate::testkit::{
            Corner, Settings, TransportUnderTest, dead_letters, eventually, settled,
        };
        use $crate::transport::Transport;

        /// The delivery budget of these scenarios.
        pub const MAX_DELIVERIES: u32 = 3;

        /// Fails until its handler saw it `fail_times` times.
        #[event(name = "delivery.job")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Job {
            pub id: u64,
            pub fail_times: u32,
            pub retryable: bool,
        }

        impl Job {
            fn succeeds(id: u64) -> Job {
                Job { id, fail_times: 0, retryable: true }
            }

            /// Fails retryably on every delivery.
            fn always_busy(id: u64) -> Job {
                Job { id, fail_times: u32::MAX, retryable: true }
            }

            /// Fails with an error that is not retryable.
            fn fatal(id: u64) -> Job {
                Job { id, fail_times: u32::MAX, retryable: false }
            }

            /// Fails retryably on its first `n` deliveries.
            fn fails(id: u64, n: u32) -> Job {
                Job { id, fail_times: n, retryable: true }
            }
        }

        #[derive(Debug, thiserror::Error)]
        #[error("cannot process job (retryable: {0})")]
        pub struct Bad(bool);

        impl Retryable for Bad {
            fn is_retryable(&self) -> bool {
                self.0
            }
        }

        /// Runs and successes by job.
        #[derive(Default)]
        pub struct Runs {
            runs: Mutex<HashMap<u64, u32>>,
            done: Mutex<Vec<u64>>,
        }

        impl Runs {
            fn of(&self, id: u64) -> u32 {
                self.runs.lock().unwrap().get(&id).copied().unwrap_or(0)
            }
        }

        pub mod delivery_jobs {
            use super::*;

            #[handler]
            async fn job(job: &Job, runs: &Runs) -> Result<(), Bad> {
                let run = {
                    let mut runs = runs.runs.lock().map_err(|_| Bad(false))?;
                    let n = runs.entry(job.id).or_insert(0);
                    *n += 1;
                    *n
                };
                if run <= job.fail_times {
                    return Err(Bad(job.retryable));
                }
                runs.done.lock().map_err(|_| Bad(false))?.push(job.id);
                Ok(())
            }
        }

        fn is_jobs(h: &HandlerMeta) -> bool {
            h.name.contains("::delivery_jobs::")
        }

        fn settings() -> Settings {
            Settings {
                max_deliveries: MAX_DELIVERIES,
                ..Settings::default()
            }
        }

        /// A worker with a `DeadLetter` layer outside a `Retry` layer (the order the docs
        /// advise), and the application's own store left as it is.
        fn layered(
            transport: impl Transport,
            letters: &MemoryDeadLetterStore,
            runs: &Arc<Runs>,
        ) -> Catga<impl Layer> {
            Catga::builder()
                .state_arc(runs.clone())
                .transport(transport)
                .service("jobs")
                .handlers(is_jobs)
                .layer(DeadLetter::new(letters.clone()))
                .layer(Retry::exponential(2).base_delay(Duration::from_millis(1)))
                .build()
                .expect("build the application")
        }

        fn publisher(transport: impl Transport) -> Catga {
            Catga::builder()
                .transport(transport)
                .service("publisher")
                .handlers(|_| false)
                .build()
                .expect("build the application")
        }

        /// Publishes a job of each kind (ids 1 to 4: succeeds, always busy, fatal, fails once)
        /// under message ids of their own, and waits until every one ran its course and is
        /// settled, and a while longer (past every redelivery delay), so a delivery too many
        /// would show. Returns the message ids.
        async fn run_each_kind<L: Layer>(
            corner: &impl Corner,
            consumer: &Catga<L>,
            runs: &Runs,
        ) -> [uuid::Uuid; 4] {
            let serving = consumer.serve().await.expect("serve");
            let publisher = publisher(corner.connect().await);
            let ids = [(); 4].map(|()| uuid::Uuid::now_v7());
            let jobs = [Job::succeeds(1), Job::always_busy(2), Job::fatal(3), Job::fails(4, 1)];
            for (job, id) in jobs.into_iter().zip(ids) {
                let ctx = Context::new().with_message_id(id);
                publisher.publish_with(job, ctx).await.expect("publish");
            }
            eventually("every job ran its course", || async {
                runs.of(1) == 1
                    && runs.of(2) >= MAX_DELIVERIES
                    && runs.of(3) == 1
                    && runs.of(4) == 2
            })
            .await;
            settled(corner, "jobs", "delivery.job", "every job settled").await;
            // Longer than every redelivery delay: another delivery would have happened by now.
            tokio::time::sleep(Duration::from_millis(500)).await;
            serving.shutdown().await;
            assert_eq!(
                [runs.of(1), runs.of(2), runs.of(3), runs.of(4)],
                [1, MAX_DELIVERIES, 1, 2],
                "a retryable failure runs max_deliveries times in all (Retry does not \
                 multiply deliveries), a failure that is not retryable runs once"
            );
            ids
        }

        /// One letter for the fatal job, kept at once, one for the always-busy job, kept on
        /// its last delivery, none for the jobs that succeeded.
        fn assert_one_letter_per_poison(kept: &[DeadLetterRecord], ids: &[uuid::Uuid; 4]) {
            let mut letters: Vec<(String, u32)> =
                kept.iter().map(|r| (r.code.clone(), r.attempts)).collect();
            letters.sort();
            assert_eq!(
                letters,
                [
                    ("handler".to_string(), 1),
                    ("handler".to_string(), MAX_DELIVERIES)
                ],
                "one letter per poison event, none for a later success: {kept:?}"
            );
            let of = |id| kept.iter().filter(|r| r.message_id == id).collect::<Vec<_>>();
            let (busy, fatal) = (of(ids[1]), of(ids[2]));
            assert_eq!(busy.len(), 1, "retryable: one letter");
            assert_eq!(fatal.len(), 1, "not retryable: one letter");
            assert_eq!(
                busy[0].attempts, MAX_DELIVERIES,
                "the letter says which delivery failed"
            );
            for record in kept {
                assert!(
                    record
                        .handler
                        .as_deref()
                        .is_some_and(|h| h.ends_with("::delivery_jobs::job")),
                    "names the handler: {record:?}"
                );
                assert_eq!(record.message, "delivery.job");
            }
        }

        pub async fn one_poison_event_leaves_exactly_one_dead_letter_and_retry_does_not_multiply_runs<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("poison_one_letter", &settings()).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let runs = Arc::new(Runs::default());
            let consumer = layered(corner.connect().await, &letters, &runs);
            let ids = run_each_kind(&corner, &consumer, &runs).await;
            assert_one_letter_per_poison(&letters.list(10).await.expect("read the dead letters"), &ids);
            assert_eq!(
                consumer.dead_letters().count_dyn().await.expect("read the dead letters"),
                0,
                "the layer kept them; the application's store does not keep them twice"
            );
        }

        pub async fn without_a_dead_letter_layer_the_applications_store_keeps_the_final_failure<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("poison_app_store", &settings()).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let runs = Arc::new(Runs::default());
            let consumer = Catga::builder()
                .state_arc(runs.clone())
                .transport(corner.connect().await)
                .service("jobs")
                .handlers(is_jobs)
                .dead_letters(letters.clone())
                .build()
                .expect("build the application");
            let ids = run_each_kind(&corner, &consumer, &runs).await;
            let kept = letters.list(10).await.expect("read the dead letters");
            assert_one_letter_per_poison(&kept, &ids);
            let busy = kept.iter().find(|r| r.message_id == ids[1]).unwrap();
            assert_eq!(busy.stage, FailureStage::Handler);
            assert_eq!(busy.code, "handler");
            assert_eq!(
                busy.payload.as_deref(),
                Some(&serde_json::to_vec(&Job::always_busy(2)).unwrap()[..]),
                "the message as it was sent"
            );
            // Replaying it runs the handler here again (and it fails again, into the same
            // store via the failing dispatch's error).
            let replay = consumer.replay_dead_letter(&letters, busy.id).await;
            assert!(replay.is_err());
            assert_eq!(runs.of(2), MAX_DELIVERIES + 1);
        }

        pub async fn an_event_that_succeeds_on_a_later_delivery_leaves_no_dead_letter<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("later_success", &settings()).await else {
                return;
            };
            let letters = MemoryDeadLetterStore::new();
            let runs = Arc::new(Runs::default());
            let consumer = layered(corner.connect().await, &letters, &runs);
            let serving = consumer.serve().await.expect("serve");
            // Job 1 fails on its first delivery, job 2 on its first two; then each succeeds.
            consumer.publish(Job::fails(1, 1)).await.expect("publish");
            consumer.publish(Job::fails(2, 2)).await.expect("publish");
            eventually("both jobs done", || async {
                runs.done.lock().unwrap().len() == 2
            })
            .await;
            settled(&corner, "jobs", "delivery.job", "both acknowledged").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!((runs.of(1), runs.of(2)), (2, 3), "handled on a later delivery, once");
            assert_eq!(letters.count().await.expect("read the dead letters"), 0, "no letter for a later success");
            assert_eq!(consumer.dead_letters().count_dyn().await.expect("read the dead letters"), 0);
            serving.shutdown().await;
        }

        /// A store that refuses its first `failures` records, then keeps them.
        #[derive(Clone, Default)]
        pub struct Flaky {
            inner: MemoryDeadLetterStore,
            failures: Arc<AtomicU32>,
        }

        impl DeadLetterStore for Flaky {
            async fn put(&self, record: DeadLetterRecord) -> Result<(), BoxError> {
                let left = self.failures.load(Ordering::SeqCst);
                if left > 0 {
                    self.failures.store(left - 1, Ordering::SeqCst);
                    return Err("the dead-letter database is down".into());
                }
                self.inner.put(record).await
            }

            async fn list(&self, limit: usize) -> Result<Vec<DeadLetterRecord>, BoxError> {
                self.inner.list(limit).await
            }

            async fn take(&self, id: uuid::Uuid) -> Result<Option<DeadLetterRecord>, BoxError> {
                self.inner.take(id).await
            }

            async fn count(&self) -> Result<usize, BoxError> {
                self.inner.count().await
            }
        }

        /// A fatal job whose failure the store refuses `failures` times, on a transport that
        /// delivers it at most `max_deliveries` times; returns the record kept and the runs.
        async fn kept_despite_the_store<K: TransportUnderTest>(
            kit: &K,
            test: &str,
            failures: u32,
            max_deliveries: u32,
        ) -> Option<(DeadLetterRecord, u32)> {
            let settings = Settings {
                max_deliveries,
                ..Settings::default()
            };
            let corner = kit.open(test, &settings).await?;
            let store = Flaky {
                failures: Arc::new(AtomicU32::new(failures)),
                ..Flaky::default()
            };
            let runs = Arc::new(Runs::default());
            let consumer = Catga::builder()
                .state_arc(runs.clone())
                .transport(corner.connect().await)
                .service("jobs")
                .handlers(is_jobs)
                .dead_letters(store.clone())
                .build()
                .expect("build the application");
            let serving = consumer.serve().await.expect("serve");
            consumer.publish(Job::fatal(9)).await.expect("publish");
            let kept = dead_letters(&store.inner, 1, "kept once the store works").await;
            settled(&corner, "jobs", "delivery.job", "settled once kept").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            serving.shutdown().await;
            assert_eq!(store.inner.count().await.expect("read the dead letters"), 1, "kept once: {kept:?}");
            assert_eq!(
                store.failures.load(Ordering::SeqCst),
                0,
                "every failed put was met"
            );
            Some((kept[0].clone(), runs.of(9)))
        }

        /// Nothing is acknowledged unkept: while the store fails, the event stays with the
        /// broker and is delivered (and run) again, until the store keeps its failure.
        pub async fn a_failure_is_not_acknowledged_until_the_store_kept_it<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some((kept, runs)) = kept_despite_the_store(kit, "store_cannot_keep", 2, 3).await
            else {
                return;
            };
            assert_eq!(
                runs, 3,
                "not acknowledged while its failure could not be kept: delivered (and run) \
                 again each time"
            );
            assert_eq!(kept.code, "handler", "{kept:?}");
            assert_eq!(kept.attempts, 3);
        }

        /// The store fails past the transport's last delivery: the deliveries after it are set
        /// aside without running the handler again, and the record kept at last still says
        /// what failed.
        pub async fn a_failure_kept_after_the_last_delivery_still_says_what_failed<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some((kept, runs)) = kept_despite_the_store(kit, "store_back_late", 3, 2).await
            else {
                return;
            };
            assert_eq!(runs, 2, "handler runs: at most max_deliveries");
            assert_eq!(kept.code, "handler", "{kept:?}");
            assert_eq!(kept.stage, FailureStage::Handler);
            assert!(kept.error.contains("cannot process"), "{}", kept.error);
        }
    };
}
