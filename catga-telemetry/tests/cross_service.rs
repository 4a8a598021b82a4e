//! One trace across two services: service A sends a command that service B handles over a
//! transport (NATS, then Redis), B's handler publishes an event that A handles. The spans the
//! receiver gets must form one trace, linked the way OpenTelemetry's messaging conventions
//! say, with their attributes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use catga_core::prelude::*;
use catga_core::testkit::unique;
use catga_core::transport::{Serving, Transport};
use catga_telemetry::testkit::{ReceivedSpan, SpanKind, Status};
use common::{Trace, servers};
use tracing::Instrument;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub sku: u64,
    pub fail: bool,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserved {
    pub sku: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("sku {0} is out of stock")]
pub struct OutOfStock(u64);

impl ErrorCode for OutOfStock {
    fn code(&self) -> &'static str {
        "stock.out"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// Service B: the stock.
pub mod stock {
    use super::*;

    #[handler]
    async fn reserve(cmd: Reserve, ctx: &Context) -> Result<u64, OutOfStock> {
        if cmd.fail {
            return Err(OutOfStock(cmd.sku));
        }
        ctx.publish(Reserved { sku: cmd.sku }).ok();
        Ok(cmd.sku * 10)
    }
}

/// Service A: the orders, told when stock is reserved.
#[derive(Default)]
pub struct Orders {
    reserved: AtomicU64,
}

pub mod orders {
    use super::*;

    #[handler]
    impl Orders {
        async fn reserved(&self, event: &Reserved) -> Result<(), Never> {
            self.reserved.fetch_add(event.sku, Ordering::SeqCst);
            Ok(())
        }
    }
}

/// The two services on `a` and `b` (one connection each, as two processes would have).
struct Services<L: Layer> {
    a: Catga<L>,
    b: Catga<L>,
    a_name: String,
    b_name: String,
    serving: Vec<Serving>,
}

async fn services(a: impl Transport, b: impl Transport) -> Services<impl Layer> {
    let a_name = unique("orders");
    let b_name = unique("stock");
    let app_a = Catga::builder()
        .state_arc(Arc::new(Orders::default()))
        .transport(a)
        .service(a_name.clone())
        .handlers(|h| h.name.starts_with("cross_service::orders::"))
        .allow_unhandled::<Reserve>()
        .layer(Tracing)
        .build()
        .expect("service A builds");
    let app_b = Catga::builder()
        .transport(b)
        .service(b_name.clone())
        .handlers(|h| h.name.starts_with("cross_service::stock::"))
        .layer(Tracing)
        .build()
        .expect("service B builds");
    let serving = vec![
        app_b.serve().await.expect("service B serves"),
        app_a.serve().await.expect("service A serves"),
    ];
    Services {
        a: app_a,
        b: app_b,
        a_name,
        b_name,
        serving,
    }
}

impl<L: Layer> Services<L> {
    async fn stop(self) {
        for serving in self.serving {
            serving.shutdown().await;
        }
        drop((self.a, self.b));
    }
}

fn child_of<'a>(trace: &'a Trace, span: &ReceivedSpan) -> &'a ReceivedSpan {
    let parent = span.parent_span_id.as_deref().expect("a parent");
    trace
        .by_id(parent)
        .unwrap_or_else(|| panic!("the parent of `{}` is in the trace", span.name))
}

/// Checks the messaging attributes every producer and consumer span carries.
fn check_messaging(span: &ReceivedSpan, system: &str, destination: &str, operation: (&str, &str)) {
    let attr = |k: &str| {
        span.attribute(k)
            .unwrap_or_else(|| panic!("`{k}` on `{}`: {span:#?}", span.name))
    };
    assert_eq!(attr("messaging.system"), system, "{span:#?}");
    assert_eq!(attr("messaging.destination.name"), destination);
    assert_eq!(attr("messaging.operation.type"), operation.0, "{span:#?}");
    assert_eq!(attr("messaging.operation.name"), operation.1, "{span:#?}");
    assert!(!attr("messaging.message.id").is_empty());
    assert!(!attr("messaging.message.conversation_id").is_empty());
}

/// A sends, B handles and publishes, A handles: one trace, linked and attributed.
async fn one_trace_across(system: &str, a: impl Transport, b: impl Transport) {
    let installed = common::installed();
    let services = services(a, b).await;
    let root = unique("test.root");
    let command = <Reserve as Message>::info().name();
    let event = <Reserved as Message>::info().name();

    let answer = services
        .a
        .send(Reserve {
            sku: 4,
            fail: false,
        })
        .instrument(tracing::info_span!("test", otel.name = %root))
        .await
        .expect("B answers A");
    assert_eq!(answer, 40);

    let (a_name, b_name) = (services.a_name.clone(), services.b_name.clone());
    let processed = |group: &str, name: &str| {
        let (group, name) = (group.to_string(), format!("process {name}"));
        move |t: &Trace| {
            t.has(&name, SpanKind::Consumer, |s| {
                s.attribute("messaging.consumer.group.name") == Some(group.as_str())
            })
        }
    };
    let event_in_a = processed(&a_name, event);
    let trace = common::trace(installed, &root, |t| {
        event_in_a(t) && t.has(&format!("dispatch {event}"), SpanKind::Internal, |_| true)
    })
    .await;
    services.stop().await;

    // One trace for everything, and only catga's spans besides the test's root.
    let root_span = trace.one(&root, SpanKind::Internal, |_| true);
    let trace_id = root_span.trace_id.clone();
    assert!(trace.spans.iter().all(|s| s.trace_id == trace_id));

    // A: `dispatch Reserve` (the `Tracing` behaviour) under the caller's span, and in it
    // `send Reserve`, a producer.
    let a_dispatch = trace.one(&format!("dispatch {command}"), SpanKind::Internal, |s| {
        s.parent_span_id.as_deref() == Some(root_span.span_id.as_str())
    });
    assert_eq!(a_dispatch.attribute("messaging.system"), Some("catga"));
    let send = trace.one(&format!("send {command}"), SpanKind::Producer, |_| true);
    assert_eq!(
        send.parent_span_id.as_deref(),
        Some(a_dispatch.span_id.as_str())
    );
    check_messaging(send, system, command, ("send", "send"));
    assert_eq!(send.status, Status::Unset);

    // B: `process Reserve`, a consumer whose parent is A's producer, which it also links to.
    let process = trace.one(&format!("process {command}"), SpanKind::Consumer, |_| true);
    assert_eq!(
        process.parent_span_id.as_deref(),
        Some(send.span_id.as_str())
    );
    assert!(
        process
            .links
            .iter()
            .any(|l| l.span_id == send.span_id && l.trace_id == trace_id),
        "the consumer links to the producer: {process:#?}"
    );
    check_messaging(process, system, command, ("process", "process"));
    assert_eq!(
        process.attribute("messaging.consumer.group.name"),
        Some(b_name.as_str())
    );
    // The same message on both sides.
    for key in ["messaging.message.id", "messaging.message.conversation_id"] {
        assert_eq!(process.attribute(key), send.attribute(key), "{key}");
    }

    // B: `dispatch Reserve` (the `Tracing` behaviour) inside the consumer span.
    let handle = trace.one(&format!("dispatch {command}"), SpanKind::Internal, |s| {
        s.parent_span_id.as_deref() == Some(process.span_id.as_str())
    });
    assert_eq!(handle.attribute("messaging.system"), Some("catga"));
    assert_eq!(handle.attribute("catga.outcome"), Some("ok"));

    // B: `publish Reserved`, a producer inside B's handling of the command.
    let publish = trace.one(&format!("publish {event}"), SpanKind::Producer, |_| true);
    let publish_parent = child_of(&trace, publish);
    assert!(
        publish_parent.span_id == handle.span_id || publish_parent.span_id == process.span_id,
        "the event is published inside B's processing, not under `{}`",
        publish_parent.name
    );
    check_messaging(publish, system, event, ("send", "publish"));
    assert_eq!(
        publish.attribute("messaging.message.conversation_id"),
        send.attribute("messaging.message.conversation_id"),
        "the event continues the command's conversation"
    );

    // A: `process Reserved` under B's producer, linked to it; then `dispatch Reserved`.
    let consumed = trace.one(&format!("process {event}"), SpanKind::Consumer, |s| {
        s.attribute("messaging.consumer.group.name") == Some(a_name.as_str())
    });
    assert_eq!(
        consumed.parent_span_id.as_deref(),
        Some(publish.span_id.as_str())
    );
    assert!(consumed.links.iter().any(|l| l.span_id == publish.span_id));
    check_messaging(consumed, system, event, ("process", "process"));
    assert_eq!(
        consumed.attribute("messaging.message.id"),
        publish.attribute("messaging.message.id")
    );
    let handled = trace.one(&format!("dispatch {event}"), SpanKind::Internal, |s| {
        s.parent_span_id.as_deref() == Some(consumed.span_id.as_str())
    });
    assert_eq!(handled.attribute("catga.outcome"), Some("ok"));
    assert_eq!(
        root_span.service_name.as_deref(),
        Some("catga-telemetry-tests")
    );
}

/// A failing handler: `error.type` and an error status on B's spans and A's.
async fn a_failure_is_marked(system: &str, a: impl Transport, b: impl Transport) {
    let installed = common::installed();
    let services = services(a, b).await;
    let root = unique("test.root");
    let command = <Reserve as Message>::info().name();

    let error = services
        .a
        .send(Reserve { sku: 9, fail: true })
        .instrument(tracing::info_span!("test", otel.name = %root))
        .await
        .expect_err("B refuses");
    assert_eq!(error.code(), "stock.out");

    let trace = common::trace(installed, &root, |t| {
        t.has(&format!("process {command}"), SpanKind::Consumer, |_| true)
            && t.has(&format!("send {command}"), SpanKind::Producer, |_| true)
    })
    .await;
    services.stop().await;

    // B's dispatch and consumer spans, A's producer and dispatch spans.
    let dispatches = trace.all(&format!("dispatch {command}"), SpanKind::Internal);
    assert_eq!(
        dispatches.len(),
        2,
        "one dispatch span in each service: {trace:#?}"
    );
    let process = trace.one(&format!("process {command}"), SpanKind::Consumer, |_| true);
    let send = trace.one(&format!("send {command}"), SpanKind::Producer, |_| true);
    for span in dispatches.into_iter().chain([process, send]) {
        assert_eq!(span.attribute("error.type"), Some("stock.out"), "{span:#?}");
        assert!(matches!(span.status, Status::Error(_)), "{span:#?}");
    }
    assert_eq!(send.attribute("messaging.system"), Some(system));
    // No event: the handler failed before publishing.
    assert!(
        trace
            .all(
                &format!("publish {}", <Reserved as Message>::info().name()),
                SpanKind::Producer
            )
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_services_over_nats() {
    let Some(nats) = servers::Nats::open("one_trace_across_services_over_nats").await else {
        return;
    };
    one_trace_across("nats", nats.transport().await, nats.transport().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_services_over_redis() {
    let Some(redis) = servers::Redis::open("one_trace_across_services_over_redis").await else {
        return;
    };
    one_trace_across("redis", redis.transport().await, redis.transport().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_marks_its_spans_over_nats() {
    let Some(nats) = servers::Nats::open("a_failing_handler_marks_its_spans_over_nats").await
    else {
        return;
    };
    a_failure_is_marked("nats", nats.transport().await, nats.transport().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_marks_its_spans_over_redis() {
    let Some(redis) = servers::Redis::open("a_failing_handler_marks_its_spans_over_redis").await
    else {
        return;
    };
    a_failure_is_marked("redis", redis.transport().await, redis.transport().await).await;
}
