//! The producer, consumer and dispatch spans around a transport, their OpenTelemetry names,
//! kinds and attributes, the trace context they hand to an installed `TracePropagation`, and
//! the conventions' duration and count instruments. Over the in-memory transport; the same
//! spans over NATS and Redis, exported through OTLP, are tested in catga-telemetry.
//!
//! The propagation is process-wide, so this binary installs one fake for all its tests.

use std::sync::{Arc, Mutex, OnceLock};

use catga_core::behavior::Tracing;
use catga_core::error::BoxError;
use catga_core::prelude::*;
use catga_core::telemetry::{TraceContext, TracePropagation, install_propagation, metric};
use catga_core::transport::MemoryTransport;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[command(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ship {
    pub parcel: u32,
}

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shipped {
    pub parcel: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("no such parcel")]
pub struct NoParcel;

pub mod shipping {
    use super::*;

    #[handler]
    pub async fn ship(cmd: Ship, ctx: &Context) -> Result<u32, NoParcel> {
        if cmd.parcel == 0 {
            return Err(NoParcel);
        }
        ctx.publish(Shipped { parcel: cmd.parcel })
            .map_err(|_| NoParcel)?;
        Ok(cmd.parcel)
    }
}

pub mod orders {
    use super::*;

    #[handler]
    pub async fn shipped(_event: &Shipped) -> Result<(), BoxError> {
        Ok(())
    }
}

// ---- a fake propagation: every enabled span gets a made-up W3C id ----

#[derive(Default)]
struct Calls {
    /// (span's catga name, remote traceparent) for `set_parent`.
    parents: Vec<(u64, String)>,
    links: Vec<(u64, String)>,
    injected: Vec<(u64, String)>,
}

fn calls() -> &'static Mutex<Calls> {
    static CALLS: OnceLock<Mutex<Calls>> = OnceLock::new();
    CALLS.get_or_init(Mutex::default)
}

struct FakePropagation;

fn span_key(span: &tracing::Span) -> u64 {
    span.id().map_or(0, |id| id.into_u64())
}

impl TracePropagation for FakePropagation {
    fn inject(&self, span: &tracing::Span) -> Option<TraceContext> {
        let traceparent = format!(
            "00-0af7651916cd43dd8448eb211c80319c-{:016x}-01",
            span_key(span)
        );
        calls()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .injected
            .push((span_key(span), traceparent.clone()));
        Some(TraceContext {
            traceparent,
            tracestate: None,
        })
    }

    fn set_parent(&self, span: &tracing::Span, context: &TraceContext) {
        calls()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .parents
            .push((span_key(span), context.traceparent.clone()));
    }

    fn add_link(&self, span: &tracing::Span, context: &TraceContext) {
        calls()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .links
            .push((span_key(span), context.traceparent.clone()));
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| install_propagation(FakePropagation).expect("first install"));
}

// ---- a layer that keeps every catga span: name, fields, contextual parent ----

#[derive(Clone, Debug)]
struct Seen {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        if !attrs.metadata().name().starts_with("catga.") {
            return;
        }
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|span| span.parent().map(|p| p.id().into_u64()));
        self.0.lock().unwrap().push(Seen {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            parent,
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
        let mut all = self.0.lock().unwrap();
        if let Some(seen) = all.iter_mut().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
}

/// Runs `body` on a one-thread runtime with `spans` capturing (spans are only seen on the
/// thread whose default subscriber records them).
fn traced<F: std::future::Future>(spans: &Spans, body: F) -> F::Output {
    install();
    let subscriber = tracing_subscriber::registry().with(spans.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    tracing::callsite::rebuild_interest_cache();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body)
}

/// Two services on one in-memory bus: `orders` sends, `shipping` handles and publishes.
async fn two_services() -> (
    Catga<impl catga_core::pipeline::Layer>,
    Catga<impl catga_core::pipeline::Layer>,
    Vec<catga_core::transport::Serving>,
) {
    let bus = MemoryTransport::new();
    let orders = Catga::builder()
        .transport(bus.clone())
        .service("orders")
        .layer(Tracing)
        .handlers(|h| h.name.starts_with("telemetry::orders::"))
        .build()
        .unwrap();
    let shipping = Catga::builder()
        .transport(bus)
        .service("shipping")
        .layer(Tracing)
        .handlers(|h| h.name.starts_with("telemetry::shipping::"))
        .build()
        .unwrap();
    let serving = vec![
        shipping.serve().await.unwrap(),
        orders.serve().await.unwrap(),
    ];
    (orders, shipping, serving)
}

#[test]
fn a_request_across_services_is_one_producer_consumer_and_handler_chain() {
    let spans = Spans::default();
    traced(&spans, async {
        let (orders, _shipping, serving) = two_services().await;
        assert_eq!(orders.send(Ship { parcel: 7 }).await.unwrap(), 7);
        catga_core::testkit::eventually("the event is processed", || async {
            spans.0.lock().unwrap().iter().any(|s| {
                s.name == "catga.dispatch"
                    && s.field("messaging.destination.name") == Some("Shipped")
            })
        })
        .await;
        drop(serving);
    });
    let all = spans.0.lock().unwrap().clone();
    let find = |name: &str, otel: &str| {
        all.iter()
            .find(|s| s.name == name && s.field("otel.name") == Some(otel))
            .unwrap_or_else(|| panic!("no {name} `{otel}` in {all:#?}"))
            .clone()
    };
    let send = find("catga.produce", "send Ship");
    assert_eq!(send.field("otel.kind"), Some("producer"));
    assert_eq!(send.field("messaging.system"), Some("catga"));
    assert_eq!(send.field("messaging.destination.name"), Some("Ship"));
    assert_eq!(send.field("messaging.operation.type"), Some("send"));
    assert_eq!(send.field("messaging.operation.name"), Some("send"));
    assert!(send.field("messaging.message.id").is_some());
    assert!(send.field("messaging.message.conversation_id").is_some());
    assert_eq!(send.field("error.type"), None);

    let process = find("catga.consume", "process Ship");
    assert_eq!(process.field("otel.kind"), Some("consumer"));
    assert_eq!(process.field("messaging.operation.type"), Some("process"));
    assert_eq!(
        process.field("messaging.consumer.group.name"),
        Some("shipping")
    );
    assert_eq!(
        process.field("messaging.message.id"),
        send.field("messaging.message.id")
    );
    assert_eq!(
        process.parent, None,
        "a consumer span starts from the envelope"
    );

    // The envelope carried the producer's context: the consumer's parent and link.
    let calls = calls()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let injected = calls
        .injected
        .iter()
        .find(|(id, _)| *id == send.id)
        .map(|(_, tp)| tp.clone())
        .expect("the producer span's context was injected");
    assert!(calls.parents.contains(&(process.id, injected.clone())));
    assert!(calls.links.contains(&(process.id, injected)));

    // The sender's pipeline around the send, and the handler's under the delivery.
    let sending = find("catga.dispatch", "dispatch Ship");
    assert_eq!(sending.field("otel.kind"), Some("internal"));
    assert_eq!(
        send.parent,
        Some(sending.id),
        "the send is inside the sender's pipeline"
    );
    let handling = all
        .iter()
        .find(|s| s.name == "catga.dispatch" && s.parent == Some(process.id))
        .unwrap_or_else(|| panic!("no dispatch span under the delivery in {all:#?}"));
    assert_eq!(handling.field("otel.name"), Some("dispatch Ship"));

    let publish = find("catga.produce", "publish Shipped");
    assert_eq!(publish.field("messaging.operation.name"), Some("publish"));
    let consumed = find("catga.consume", "process Shipped");
    assert_eq!(
        consumed.field("messaging.consumer.group.name"),
        Some("orders")
    );
    let injected = calls
        .injected
        .iter()
        .find(|(id, _)| *id == publish.id)
        .map(|(_, tp)| tp.clone())
        .expect("the event's producer context was injected");
    assert!(calls.parents.contains(&(consumed.id, injected)));
}

#[test]
fn a_failed_request_marks_both_sides_with_its_error_type() {
    let spans = Spans::default();
    traced(&spans, async {
        let (orders, _shipping, serving) = two_services().await;
        let error = orders.send(Ship { parcel: 0 }).await.unwrap_err();
        assert_eq!(error.code(), "handler");
        drop(serving);
    });
    let all = spans.0.lock().unwrap().clone();
    let send = all
        .iter()
        .rfind(|s| s.field("otel.name") == Some("send Ship"))
        .unwrap();
    assert_eq!(send.field("error.type"), Some("handler"));
    assert_eq!(send.field("otel.status_code"), Some("ERROR"));
    let process = all
        .iter()
        .rfind(|s| s.field("otel.name") == Some("process Ship"))
        .unwrap();
    assert_eq!(process.field("error.type"), Some("handler"));
    assert_eq!(process.field("otel.status_code"), Some("ERROR"));
}

#[test]
fn outside_any_span_a_dispatch_continues_the_callers_traceparent() {
    let spans = Spans::default();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    traced(&spans, async {
        let app = Catga::builder()
            .layer(Tracing)
            .handlers(|h| h.name.starts_with("telemetry::shipping::"))
            .build()
            .unwrap();
        let ctx = Context::new().with_header("traceparent", traceparent);
        app.send_with(Ship { parcel: 1 }, ctx).await.unwrap();
    });
    let all = spans.0.lock().unwrap().clone();
    let handle = all
        .iter()
        .find(|s| s.field("otel.name") == Some("dispatch Ship"))
        .unwrap();
    assert!(
        calls()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .parents
            .contains(&(handle.id, traceparent.to_string()))
    );
}

#[test]
fn durations_are_histograms_in_seconds_with_the_conventions_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let spans = Spans::default();
    metrics::with_local_recorder(&recorder, || {
        traced(&spans, async {
            let (orders, _shipping, serving) = two_services().await;
            orders.send(Ship { parcel: 3 }).await.unwrap();
            orders.send(Ship { parcel: 0 }).await.unwrap_err();
            drop(serving);
        })
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let labels = |key: &metrics_util::CompositeKey| -> Vec<(String, String)> {
        key.key()
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect()
    };
    let sample = |name: &str, want: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name && {
                    let have = labels(key);
                    want.iter()
                        .all(|(k, v)| have.contains(&(k.to_string(), v.to_string())))
                        && have.len() == want.len()
                }
            })
            .map(|(_, _, _, value)| value)
            .unwrap_or_else(|| panic!("no {name} {want:?} in {snapshot:#?}"))
    };
    let ok = [
        ("messaging_system", "catga"),
        ("messaging_destination_name", "Ship"),
        ("messaging_operation_name", "send"),
    ];
    let DebugValue::Histogram(seconds) = sample(metric::CLIENT_OPERATION_DURATION, &ok) else {
        panic!("a histogram")
    };
    assert_eq!(seconds.len(), 1);
    assert!(
        seconds[0].into_inner() > 0.0 && seconds[0].into_inner() < 60.0,
        "seconds, not ms"
    );
    assert!(matches!(
        sample(metric::CLIENT_SENT_MESSAGES, &ok),
        DebugValue::Counter(1)
    ));
    let failed = [
        ("messaging_system", "catga"),
        ("messaging_destination_name", "Ship"),
        ("messaging_operation_name", "send"),
        ("error_type", "handler"),
    ];
    assert!(matches!(
        sample(metric::CLIENT_SENT_MESSAGES, &failed),
        DebugValue::Counter(1)
    ));
    let processed = [
        ("messaging_system", "catga"),
        ("messaging_destination_name", "Ship"),
        ("messaging_operation_name", "process"),
    ];
    assert!(matches!(
        sample(metric::PROCESS_DURATION, &processed),
        DebugValue::Histogram(_)
    ));
    assert!(matches!(
        sample(metric::CLIENT_CONSUMED_MESSAGES, &processed),
        DebugValue::Counter(1)
    ));
}
