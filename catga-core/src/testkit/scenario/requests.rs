//! Commands and queries across a transport: a request without a local handler goes to the
//! service that has one and its reply comes back; a handler error comes back typed, not as a
//! timeout; the caller's deadline travels, and a request that expired before anyone took it
//! is never handled; with nobody serving, a request fails at once with `NoResponders`; the
//! instances of a service share the requests; trace context and headers reach the handler;
//! MessagePack works as JSON does; a reply larger than the caller accepts is refused; a
//! transport chosen at run time can be boxed or shared; shutting down answers what is in
//! flight first, and one waiting request does not hold up the next.

/// The `requests` family (see the module docs): `()` declares its messages, handlers and
/// scenarios; `(tests)` writes one test per scenario.
#[doc(hidden)]
#[macro_export]
macro_rules! __catga_scenarios_requests {
    (tests) => {
        $crate::__catga_conformance_tests!(
            a_request_goes_to_the_service_that_handles_it_and_the_reply_comes_back,
            a_handler_error_comes_back_typed_not_as_a_timeout,
            the_callers_deadline_travels_and_an_expired_request_is_not_handled,
            with_nobody_serving_a_request_fails_fast_with_no_responders,
            the_instances_of_a_service_share_requests,
            the_trace_context_and_headers_reach_the_handlers,
            without_a_propagator_the_conversation_is_the_trace,
            messagepack_requests_round_trip,
            a_reply_over_the_callers_payload_limit_is_refused_not_decoded,
            a_transport_chosen_at_run_time_can_be_boxed_or_shared,
            shutdown_answers_the_requests_in_flight_first,
            a_waiting_request_does_not_hold_up_the_next,
        );
    };
    () => {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::Duration;

        use $crate::envelope::Envelope;
        use $crate::prelude::*;
        use $crate::testkit::{Corner as _, PATIENCE, Settings, TransportUnderTest, eventually};
        use $crate::transport::{Reply, Transport, TransportError};
        use $crate::{MessageKind, WireFormat};

        #[command(output = u64, name = "requests.ship")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Ship {
            pub order: u64,
            pub fail: bool,
            /// How long the handler takes.
            pub millis: u64,
        }

        #[query(output = String, name = "requests.who-am-i")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct WhoAmI;

        /// Replies with the trace context and a user header the handler received.
        #[query(output = (Option<String>, Option<String>), name = "requests.echo")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Echo;

        #[event(name = "requests.order-placed")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct OrderPlaced {
            pub order: u64,
        }

        /// Waits until the test releases it.
        #[command(output = u64, name = "requests.hold")]
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct Hold {
            pub order: u64,
        }

        #[derive(Debug, thiserror::Error)]
        #[error("no courier for order {0}")]
        pub struct NoCourier(u64);

        /// One instance's state: who it is, what it handled, and the gate `Hold` waits at.
        #[derive(Default)]
        pub struct Seen {
            instance: String,
            shipped: Mutex<Vec<u64>>,
            placed_traces: Mutex<Vec<Option<String>>>,
            holding: AtomicU32,
            release: tokio::sync::Notify,
        }

        impl Seen {
            fn shipped(&self) -> Vec<u64> {
                self.shipped.lock().unwrap().clone()
            }

            /// Releases every `Hold` waiting now or later.
            fn release(&self) {
                self.release.notify_waiters();
            }
        }

        pub mod requests_shipping {
            use super::*;

            #[handler]
            impl Seen {
                async fn ship(&self, cmd: Ship) -> Result<u64, NoCourier> {
                    tokio::time::sleep(Duration::from_millis(cmd.millis)).await;
                    if cmd.fail {
                        return Err(NoCourier(cmd.order));
                    }
                    self.shipped
                        .lock()
                        .map_err(|_| NoCourier(0))?
                        .push(cmd.order);
                    Ok(cmd.order * 10)
                }

                async fn who(&self, _q: WhoAmI) -> Result<String, NoCourier> {
                    Ok(self.instance.clone())
                }

                async fn echo(
                    &self,
                    _q: Echo,
                    ctx: &Context,
                ) -> Result<(Option<String>, Option<String>), NoCourier> {
                    Ok((
                        ctx.header("traceparent").map(str::to_string),
                        ctx.header("tenant").map(str::to_string),
                    ))
                }

                async fn placed(&self, _event: &OrderPlaced, ctx: &Context) -> Result<(), NoCourier> {
                    self.placed_traces
                        .lock()
                        .map_err(|_| NoCourier(0))?
                        .push(ctx.header("traceparent").map(str::to_string));
                    Ok(())
                }

                async fn hold(&self, cmd: Hold) -> Result<u64, NoCourier> {
                    let released = self.release.notified();
                    self.holding.fetch_add(1, Ordering::SeqCst);
                    released.await;
                    Ok(cmd.order)
                }
            }
        }

        /// An instance of the shipping service, named `name`, on `transport`.
        fn shipping(transport: impl Transport, name: &str) -> (Catga, Arc<Seen>) {
            let seen = Arc::new(Seen {
                instance: name.to_string(),
                ..Seen::default()
            });
            let app = Catga::builder()
                .state_arc(seen.clone())
                .transport(transport)
                .service("shipping")
                .handlers(|h| h.name.contains("::requests_shipping::"))
                .build()
                .expect("build the application");
            (app, seen)
        }

        /// An application with no handlers: everything it sends goes over the transport.
        fn caller(transport: impl Transport) -> Catga {
            Catga::builder()
                .transport(transport)
                .service("orders")
                .handlers(|_| false)
                .build()
                .expect("build the application")
        }

        fn ship(order: u64) -> Ship {
            Ship {
                order,
                fail: false,
                millis: 0,
            }
        }

        pub async fn a_request_goes_to_the_service_that_handles_it_and_the_reply_comes_back<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_routed", &Settings::default()).await else {
                return;
            };
            // Two apps, two connections: as two processes would.
            let (app, seen) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let orders = caller(corner.connect().await);
            assert_eq!(orders.send(ship(4)).await.unwrap(), 40);
            assert_eq!(orders.send(ship(5)).await.unwrap(), 50);
            assert_eq!(seen.shipped(), vec![4, 5]);
            serving.shutdown().await;
        }

        pub async fn a_handler_error_comes_back_typed_not_as_a_timeout<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_error", &Settings::default()).await else {
                return;
            };
            let (app, _) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let failing = Ship {
                fail: true,
                ..ship(9)
            };
            let err = caller(corner.connect().await)
                .send(failing)
                .await
                .unwrap_err();
            let ErrorKind::Remote { failure, .. } = err.kind() else {
                panic!("expected a remote error, got {err:?}");
            };
            assert!(
                failure.message.contains("no courier for order 9"),
                "{failure:?}"
            );
            assert_eq!(err.code(), "handler", "the code it had where it failed");
            assert!(!err.is_retryable());
            serving.shutdown().await;
        }

        /// The handler would outlive the caller's deadline, which travelled with the request:
        /// the caller gets a timeout while the handler runs, and the serving side cuts the
        /// handler off there too. A request whose deadline passed before any instance took it
        /// is not handled at all.
        pub async fn the_callers_deadline_travels_and_an_expired_request_is_not_handled<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_deadline", &Settings::default()).await else {
                return;
            };
            let (app, seen) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let transport = corner.connect().await;
            let orders = caller(transport.clone());

            let held = {
                let orders = orders.clone();
                tokio::spawn(async move {
                    let ctx = Context::new().with_timeout(Duration::from_secs(1));
                    orders.send_with(Hold { order: 1 }, ctx).await
                })
            };
            eventually("the held handler to be reached", || async {
                seen.holding.load(Ordering::SeqCst) == 1
            })
            .await;
            let err = held.await.unwrap().unwrap_err();
            assert_eq!(
                err.code(),
                "timeout",
                "the caller stopped waiting at its deadline: {err:?}"
            );
            seen.release();

            let ctx = Context::new().with_timeout(Duration::from_millis(200));
            let slow = Ship {
                millis: 1_000,
                ..ship(2)
            };
            let err = orders.send_with(slow, ctx).await.unwrap_err();
            assert_eq!(err.code(), "timeout", "{err:?}");

            let ctx = Context::new().with_timeout(Duration::from_millis(1));
            let payload = serde_json::to_vec(&ship(3)).unwrap();
            let stale = Envelope::with_payload(
                "requests.ship",
                MessageKind::Command,
                &ctx,
                WireFormat::Json,
                payload,
            );
            // A deadline is wall-clock time, which a paused Tokio clock does not move.
            std::thread::sleep(Duration::from_millis(5));
            assert!(stale.expired());
            let late = transport.request(stale, Duration::from_millis(300)).await;
            if corner.capabilities().answers_expired_requests {
                assert!(
                    matches!(&late, Ok(Reply::Err(failure)) if failure.code == "timeout"),
                    "{late:?}"
                );
            } else {
                assert!(matches!(late, Err(TransportError::Timeout(_))), "{late:?}");
            }
            assert_eq!(orders.send(ship(4)).await.unwrap(), 40);
            serving.shutdown().await;
            assert_eq!(
                seen.shipped(),
                vec![4],
                "the slow one was cut off at the caller's deadline (it travelled with the \
                 request), and the expired one never ran"
            );
        }

        pub async fn with_nobody_serving_a_request_fails_fast_with_no_responders<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("no_responders", &Settings::default()).await else {
                return;
            };
            let orders = caller(corner.connect().await);
            let no_responders = |err: &Error| {
                matches!(
                    err.kind(),
                    ErrorKind::Transport {
                        source: TransportError::NoResponders(name),
                        ..
                    } if name == "requests.ship"
                )
            };
            let err = orders.send(ship(1)).await.unwrap_err();
            assert!(no_responders(&err), "{err:?}");
            assert!(err.is_retryable(), "a service may come up");

            // Once the last instance has shut down, nobody serves it again.
            let (app, _) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            assert_eq!(orders.send(ship(2)).await.unwrap(), 20);
            serving.shutdown().await;
            let err = orders.send(ship(3)).await.unwrap_err();
            assert!(no_responders(&err), "{err:?}");
        }

        pub async fn the_instances_of_a_service_share_requests<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("requests_shared", &Settings::default()).await else {
                return;
            };
            let mut instances = Vec::new();
            let mut serving = Vec::new();
            for name in ["s1", "s2", "s3"] {
                let (app, seen) = shipping(corner.connect().await, name);
                serving.push(app.serve().await.expect("serve"));
                instances.push(seen);
            }
            let orders = caller(corner.connect().await);
            for order in 0..30 {
                let reply = orders
                    .send(Ship {
                        millis: 1,
                        ..ship(order)
                    })
                    .await
                    .unwrap();
                assert_eq!(reply, order * 10);
            }
            let shares: Vec<usize> = instances.iter().map(|s| s.shipped().len()).collect();
            assert_eq!(shares.iter().sum::<usize>(), 30, "{shares:?}");
            assert!(
                shares.iter().all(|&n| n > 0),
                "every instance took a share: {shares:?}"
            );
            let mut shipped: Vec<u64> = instances.iter().flat_map(|s| s.shipped()).collect();
            shipped.sort_unstable();
            assert_eq!(
                shipped,
                (0..30).collect::<Vec<_>>(),
                "each once, none twice"
            );
            for s in serving {
                s.shutdown().await;
            }
        }

        pub async fn the_trace_context_and_headers_reach_the_handlers<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_trace", &Settings::default()).await else {
                return;
            };
            let (app, seen) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let orders = caller(corner.connect().await);
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let ctx = Context::new()
                .with_header("traceparent", traceparent)
                .with_header("tenant", "acme");
            let (seen_trace, seen_tenant) = orders.send_with(Echo, ctx).await.unwrap();
            assert_eq!(seen_trace.as_deref(), Some(traceparent));
            assert_eq!(seen_tenant.as_deref(), Some("acme"));

            let ctx = Context::new().with_header("traceparent", traceparent);
            orders
                .publish_with(OrderPlaced { order: 1 }, ctx)
                .await
                .expect("publish");
            eventually("the event arrives", || async {
                !seen.placed_traces.lock().unwrap().is_empty()
            })
            .await;
            serving.shutdown().await;
            assert_eq!(
                *seen.placed_traces.lock().unwrap(),
                vec![Some(traceparent.to_string())]
            );
        }

        pub async fn without_a_propagator_the_conversation_is_the_trace<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("conversation_trace", &Settings::default()).await else {
                return;
            };
            let (app, _) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            // Nothing set: the trace context is derived from the ids and not sent; the
            // receiver derives the same one, so sender and receiver share the trace id.
            let conversation = uuid::Uuid::now_v7();
            let ctx = Context::new().with_correlation_id(conversation);
            let (seen_trace, _) = caller(corner.connect().await)
                .send_with(Echo, ctx)
                .await
                .unwrap();
            let seen_trace = seen_trace.expect("the handler has a trace context");
            let trace_id = seen_trace.split('-').nth(1).unwrap();
            assert_eq!(trace_id, conversation.simple().to_string(), "{seen_trace}");
            serving.shutdown().await;
        }

        pub async fn messagepack_requests_round_trip<K: TransportUnderTest>(kit: &K) {
            let Some(corner) = kit.open("messagepack", &Settings::default()).await else {
                return;
            };
            let (app, _) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let orders = Catga::builder()
                .transport(corner.connect().await)
                .wire_format(WireFormat::MessagePack)
                .handlers(|_| false)
                .build()
                .expect("build the application");
            assert_eq!(orders.send(WhoAmI).await.unwrap(), "s1");
            serving.shutdown().await;
        }

        pub async fn a_reply_over_the_callers_payload_limit_is_refused_not_decoded<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("reply_too_large", &Settings::default()).await else {
                return;
            };
            let (app, _) = shipping(corner.connect().await, &"s".repeat(4096));
            let serving = app.serve().await.expect("serve");
            let caller = Catga::builder()
                .transport(corner.connect().await)
                .handlers(|_| false)
                .max_payload_bytes(1024)
                .build()
                .expect("build the application");
            let err = caller.send(WhoAmI).await.unwrap_err();
            assert_eq!(err.code(), "codec");
            assert!(
                err.to_string().contains("exceeds the limit of 1024 bytes"),
                "{err}"
            );
            serving.shutdown().await;
        }

        pub async fn a_transport_chosen_at_run_time_can_be_boxed_or_shared<
            K: TransportUnderTest,
        >(
            kit: &K,
        ) {
            let Some(corner) = kit.open("boxed_transport", &Settings::default()).await else {
                return;
            };
            let boxed: Box<dyn Transport> = Box::new(corner.connect().await);
            let shared: Arc<dyn Transport> = Arc::new(corner.connect().await);
            let (app, _) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            for transport in [boxed, Box::new(shared)] {
                let caller = Catga::builder()
                    .transport(transport)
                    .handlers(|_| false)
                    .build()
                    .expect("build the application");
                assert_eq!(caller.send(WhoAmI).await.unwrap(), "s1");
            }
            serving.shutdown().await;
        }

        pub async fn shutdown_answers_the_requests_in_flight_first<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_drain", &Settings::default()).await else {
                return;
            };
            let (app, seen) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let orders = caller(corner.connect().await);
            let call = tokio::spawn(async move { orders.send(Hold { order: 3 }).await });
            eventually("the handler to start", || async {
                seen.holding.load(Ordering::SeqCst) == 1
            })
            .await;
            let stopping = tokio::spawn(serving.shutdown());
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                !stopping.is_finished(),
                "shutdown must wait for the request in flight"
            );
            seen.release();
            tokio::time::timeout(PATIENCE, stopping)
                .await
                .expect("shutdown finishes once the handler does")
                .unwrap();
            assert_eq!(
                call.await.unwrap().unwrap(),
                3,
                "and the caller got its reply"
            );
        }

        pub async fn a_waiting_request_does_not_hold_up_the_next<K: TransportUnderTest>(
            kit: &K,
        ) {
            let Some(corner) = kit.open("request_not_held_up", &Settings::default()).await else {
                return;
            };
            let (app, seen) = shipping(corner.connect().await, "s1");
            let serving = app.serve().await.expect("serve");
            let orders = caller(corner.connect().await);
            let held = {
                let orders = orders.clone();
                tokio::spawn(async move { orders.send(Hold { order: 4 }).await })
            };
            eventually("the held handler to start", || async {
                seen.holding.load(Ordering::SeqCst) == 1
            })
            .await;
            // The one instance answers a quick request while the first still waits.
            let quick = tokio::time::timeout(PATIENCE, orders.send(ship(5)))
                .await
                .expect("a quick request is answered while another waits")
                .unwrap();
            assert_eq!(quick, 50);
            assert!(!held.is_finished());
            seen.release();
            assert_eq!(held.await.unwrap().unwrap(), 4);
            serving.shutdown().await;
        }
    };
}
