//! Commands and queries over real NATS: routing to the service that handles them, replies,
//! errors and deadlines across the wire, queue groups sharing the load, trace context, size
//! limits and draining. The same scenarios as catga-core's tests/transport.rs.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::prelude::*;
use catga_core::transport::{Transport, TransportError};
use catga_core::{MessageKind, WireFormat};
use catga_nats::NatsTransport;
use common::{Corner, PATIENCE, eventually};
use tokio::sync::Notify;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub order: u64,
    pub fail: bool,
}

#[query(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI;

/// Replies with the trace context and a user header the handler received.
#[query(output = (Option<String>, Option<String>))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo;

/// Waits until the test releases it.
#[command(output = u64)]
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
    holding: AtomicU32,
    release: Notify,
}

pub mod shipping {
    use super::*;

    #[handler]
    impl Seen {
        async fn ship(&self, cmd: Ship) -> Result<u64, NoCourier> {
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

        async fn hold(&self, cmd: Hold) -> Result<u64, NoCourier> {
            let released = self.release.notified();
            self.holding.fetch_add(1, Ordering::SeqCst);
            released.await;
            Ok(cmd.order)
        }
    }
}

fn shipping(nats: &NatsTransport, service: &str, name: &str) -> (Catga, Arc<Seen>) {
    let seen = Arc::new(Seen {
        instance: name.to_string(),
        ..Seen::default()
    });
    let app = Catga::builder()
        .state_arc(seen.clone())
        .transport(nats.clone())
        .service(service)
        .handlers(|h| h.name.starts_with("requests::shipping::"))
        .build()
        .unwrap();
    (app, seen)
}

/// An application with no handlers: everything it sends goes over NATS.
fn caller(nats: &NatsTransport) -> Catga {
    Catga::builder()
        .transport(nats.clone())
        .service(common::unique("caller"))
        .handlers(|_| false)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_goes_to_the_service_that_handles_it_and_the_reply_comes_back() {
    let Some(corner) = Corner::new("a_request_goes_to_the_service").await else {
        return;
    };
    let service = common::unique("shipping");
    // Two apps, two connections: as two processes would.
    let (app, seen) = shipping(&corner.connect().await, &service, "s1");
    let serving = app.serve().await.unwrap();
    let orders = caller(&corner.connect().await);
    let reply = orders
        .send(Ship {
            order: 4,
            fail: false,
        })
        .await
        .unwrap();
    assert_eq!(reply, 40);
    assert_eq!(*seen.shipped.lock().unwrap(), vec![4]);
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_comes_back_typed_not_as_a_timeout() {
    let Some(corner) = Corner::new("a_handler_error_comes_back_typed").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, _) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let err = caller(&nats)
        .send(Ship {
            order: 9,
            fail: true,
        })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_travels_and_expires_as_a_timeout() {
    let Some(corner) = Corner::new("the_callers_deadline_travels").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, seen) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let orders = caller(&nats);
    let call = tokio::spawn(async move {
        let ctx = Context::new().with_timeout(Duration::from_secs(1));
        orders.send_with(Hold { order: 1 }, ctx).await
    });
    eventually("the handler to be reached", PATIENCE, || {
        seen.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        "timeout",
        "the caller stopped waiting at its deadline: {err:?}"
    );
    seen.release.notify_waiters();
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_serving_a_request_fails_fast_with_no_responders() {
    let Some(corner) = Corner::new("with_nobody_serving").await else {
        return;
    };
    let err = caller(&corner.connect().await)
        .send(Ship {
            order: 1,
            fail: false,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Transport { source: TransportError::NoResponders(name), .. } if name == "Ship"
        ),
        "{err:?}"
    );
    assert!(err.is_retryable(), "a service may come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instances_of_a_service_share_requests() {
    let Some(corner) = Corner::new("the_instances_of_a_service_share_requests").await else {
        return;
    };
    let service = common::unique("shipping");
    let mut instances = Vec::new();
    let mut serving = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let (app, seen) = shipping(&corner.connect().await, &service, name);
        serving.push(app.serve().await.unwrap());
        instances.push(seen);
    }
    let orders = caller(&corner.connect().await);
    for order in 0..30 {
        let reply = orders.send(Ship { order, fail: false }).await.unwrap();
        assert_eq!(reply, order * 10);
    }
    let shares: Vec<usize> = instances
        .iter()
        .map(|s| s.shipped.lock().unwrap().len())
        .collect();
    assert_eq!(shares.iter().sum::<usize>(), 30, "{shares:?}");
    assert!(
        shares.iter().all(|&n| n > 0),
        "every instance took a share: {shares:?}"
    );
    let mut shipped: Vec<u64> = instances
        .iter()
        .flat_map(|s| s.shipped.lock().unwrap().clone())
        .collect();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_context_and_headers_reach_the_handler() {
    let Some(corner) = Corner::new("the_trace_context_and_headers").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, _) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ctx = Context::new()
        .with_header("traceparent", traceparent)
        .with_header("tenant", "acme");
    let (seen_trace, seen_tenant) = caller(&nats).send_with(Echo, ctx).await.unwrap();
    assert_eq!(seen_trace.as_deref(), Some(traceparent));
    assert_eq!(seen_tenant.as_deref(), Some("acme"));
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_propagator_the_conversation_is_the_trace() {
    let Some(corner) = Corner::new("the_conversation_is_the_trace").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, _) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    // Nothing set: the trace context is derived from the ids and not sent; the receiver
    // derives the same one, so sender and receiver share the trace id.
    let conversation = uuid::Uuid::now_v7();
    let ctx = Context::new().with_correlation_id(conversation);
    let (seen_trace, _) = caller(&nats).send_with(Echo, ctx).await.unwrap();
    let seen_trace = seen_trace.expect("the handler has a trace context");
    let trace_id = seen_trace.split('-').nth(1).unwrap();
    assert_eq!(trace_id, conversation.simple().to_string(), "{seen_trace}");
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagepack_requests_round_trip() {
    let Some(corner) = Corner::new("messagepack_requests_round_trip").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, _) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let orders = Catga::builder()
        .transport(nats.clone())
        .wire_format(WireFormat::MessagePack)
        .handlers(|_| false)
        .build()
        .unwrap();
    assert_eq!(orders.send(WhoAmI).await.unwrap(), "s1");
    serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_servers_max_payload_is_refused_before_sending() {
    let Some(corner) = Corner::new("a_message_over_the_servers_max_payload").await else {
        return;
    };
    let nats = corner.connect().await;
    let max = nats.client().server_info().max_payload;
    let envelope = |size: usize, kind| {
        Envelope::with_payload(
            "Ship",
            kind,
            &Context::new(),
            WireFormat::Json,
            vec![b' '; size],
        )
    };
    let refused = nats
        .request(envelope(max, MessageKind::Command), Duration::from_secs(5))
        .await;
    assert!(
        matches!(refused, Err(TransportError::TooLarge { size, limit }) if limit == max && size > max),
        "the headers count too: {refused:?}"
    );
    let refused = nats.publish(envelope(max + 1, MessageKind::Event)).await;
    assert!(
        matches!(refused, Err(TransportError::TooLarge { limit, .. }) if limit == max),
        "{refused:?}"
    );
    // Just under the limit, a request is sent (and finds nobody).
    let sent = nats
        .request(
            envelope(max / 2, MessageKind::Command),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(sent, Err(TransportError::NoResponders(_))),
        "{sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_requests_in_flight_first() {
    let Some(corner) = Corner::new("shutdown_answers_the_requests_in_flight").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, seen) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let orders = caller(&nats);
    let call = tokio::spawn(async move { orders.send(Hold { order: 3 }).await });
    eventually("the handler to start", PATIENCE, || {
        seen.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    let stopping = tokio::spawn(serving.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown must wait for the request in flight"
    );
    seen.release.notify_waiters();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_does_not_hold_up_the_next() {
    let Some(corner) = Corner::new("a_waiting_request_does_not_hold_up").await else {
        return;
    };
    let nats = corner.connect().await;
    let (app, seen) = shipping(&nats, &common::unique("shipping"), "s1");
    let serving = app.serve().await.unwrap();
    let orders = caller(&nats);
    let held = {
        let orders = orders.clone();
        tokio::spawn(async move { orders.send(Hold { order: 4 }).await })
    };
    eventually("the held handler to start", PATIENCE, || {
        seen.holding.load(Ordering::SeqCst) == 1
    })
    .await;
    // The one instance answers a quick request while the first still waits.
    let quick = tokio::time::timeout(
        PATIENCE,
        orders.send(Ship {
            order: 5,
            fail: false,
        }),
    )
    .await
    .expect("a quick request is answered while another waits")
    .unwrap();
    assert_eq!(quick, 50);
    assert!(!held.is_finished());
    seen.release.notify_waiters();
    assert_eq!(held.await.unwrap().unwrap(), 4);
    serving.shutdown().await;
}
