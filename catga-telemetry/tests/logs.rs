//! Log lines: one JSON object per event, whose `trace_id`/`span_id` are those of the span it
//! happened in as exported; or text when asked.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use catga_core::prelude::*;
use catga_telemetry::LogFormat;
use catga_telemetry::testkit::{OtlpReceiver, SpanKind};
use serde_json::Value;

#[command(output = String)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greet {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} is not welcome")]
pub struct Unwelcome(String);

impl ErrorCode for Unwelcome {
    fn code(&self) -> &'static str {
        "greet.unwelcome"
    }
}

pub mod greeter {
    use super::*;

    #[handler]
    async fn greet(cmd: Greet) -> Result<String, Unwelcome> {
        if cmd.name == "mallory" {
            return Err(Unwelcome(cmd.name));
        }
        tracing::info!(target: "app", who = %cmd.name, count = 1_u64, "greeted");
        Ok(format!("hello {}", cmd.name))
    }
}

/// A log writer for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
        .expect("log lines are UTF-8")
    }

    /// Every line as JSON: a line that is not one JSON object fails the test.
    fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| {
                let value: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(value.is_object(), "not an object: {line}");
                value
            })
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn app() -> Catga<impl Layer> {
    Catga::builder()
        .handlers(|h| h.name.starts_with("logs::greeter::"))
        .layer(Tracing)
        .build()
        .expect("the app builds")
}

#[test]
fn a_json_line_carries_the_ids_of_the_exported_span_it_happened_in() {
    let receiver = OtlpReceiver::start().expect("a loopback port");
    let logs = Captured::default();
    let writer = logs.clone();
    let parts = catga_telemetry::builder()
        .otlp_endpoint(receiver.endpoint())
        .log_filter("info")
        .log_format(LogFormat::Json)
        .log_writer(move || writer.clone())
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    let _default = tracing::dispatcher::set_default(&parts.dispatch);

    tracing::info!(target: "app", "outside any span");
    let app = app();
    let greeting = runtime()
        .block_on(app.send(Greet {
            name: "alice".into(),
        }))
        .expect("alice is welcome");
    assert_eq!(greeting, "hello alice");
    let refused = runtime().block_on(app.send(Greet {
        name: "mallory".into(),
    }));
    assert_eq!(
        refused.expect_err("mallory is not").code(),
        "greet.unwelcome"
    );
    parts.guard.flush().expect("the receiver accepts the spans");

    let lines = logs.json_lines();
    let spans = receiver.spans();
    let find = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("a line `{message}` in {lines:#?}"))
    };

    // Outside any span: no span, no ids.
    let outside = find("outside any span");
    assert_eq!(outside["level"], "INFO");
    assert_eq!(outside["target"], "app");
    assert!(outside.get("trace_id").is_none() && outside.get("span").is_none());
    assert!(
        outside["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
        "an RFC 3339 UTC timestamp: {outside}"
    );

    // Inside the handler: the dispatch span's ids, as exported.
    let greeted = find("greeted");
    assert_eq!(greeted["fields"]["who"], "alice");
    assert_eq!(greeted["fields"]["count"], 1);
    assert_eq!(greeted["span"]["name"], "catga.dispatch");
    assert_eq!(greeted["span"]["messaging.destination.name"], "Greet");
    // `spans` names the enclosing spans, outermost first; their fields are in `span` only.
    assert_eq!(
        greeted["spans"],
        serde_json::json!([{ "name": "catga.dispatch" }])
    );
    let dispatch = spans
        .iter()
        .find(|s| s.name == "dispatch Greet" && s.attribute("catga.outcome") == Some("ok"))
        .unwrap_or_else(|| panic!("the dispatch span in {spans:#?}"));
    assert_eq!(dispatch.kind, SpanKind::Internal);
    assert_eq!(greeted["trace_id"], dispatch.trace_id.as_str());
    assert_eq!(greeted["span_id"], dispatch.span_id.as_str());

    // The failure's line (an event with an explicit parent): the failing span's ids. A
    // handler's own coded error is the caller's (`Error::is_domain`): INFO, not WARN.
    let failed = find("dispatch failed");
    assert_eq!(failed["level"], "INFO");
    assert_eq!(failed["fields"]["code"], "greet.unwelcome");
    let failing = spans
        .iter()
        .find(|s| s.attribute("error.type") == Some("greet.unwelcome"))
        .unwrap_or_else(|| panic!("the failing span in {spans:#?}"));
    assert_eq!(failed["trace_id"], failing.trace_id.as_str());
    assert_eq!(failed["span_id"], failing.span_id.as_str());
    assert_ne!(failing.trace_id, dispatch.trace_id, "two sends, two traces");
}

#[test]
fn text_logs_are_for_people() {
    let logs = Captured::default();
    let writer = logs.clone();
    let parts = catga_telemetry::builder()
        .traces(false)
        .log_filter("info")
        .log_format(LogFormat::Text)
        .log_writer(move || writer.clone())
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    assert!(!parts.guard.exports_traces());
    let _default = tracing::dispatcher::set_default(&parts.dispatch);
    runtime()
        .block_on(app().send(Greet { name: "bob".into() }))
        .expect("bob is welcome");
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("greeted"))
        .unwrap_or_else(|| panic!("a `greeted` line in {text}"));
    assert!(
        line.contains(" INFO ") && line.contains("who=bob"),
        "{line}"
    );
    assert!(line.contains("catga.dispatch"), "the span is named: {line}");
    assert!(
        !line.starts_with('{') && !line.contains('\u{1b}'),
        "plain text: {line}"
    );
}

#[test]
fn the_filter_decides_what_is_written() {
    let logs = Captured::default();
    let writer = logs.clone();
    let parts = catga_telemetry::builder()
        .traces(false)
        .log_filter("warn")
        .log_writer(move || writer.clone())
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    let _default = tracing::dispatcher::set_default(&parts.dispatch);
    tracing::info!(target: "app", "quiet");
    tracing::warn!(target: "app", "loud");
    let lines = logs.json_lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["message"], "loud");
}

#[test]
fn enclosing_spans_are_listed_by_name_and_their_fields_written_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let parts = catga_telemetry::builder()
        .traces(false)
        .log_filter("info")
        .log_writer(move || writer.clone())
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    let _default = tracing::dispatcher::set_default(&parts.dispatch);
    tracing::info_span!("request", path = "/orders").in_scope(|| {
        tracing::info_span!("work", step = 2_u64).in_scope(|| {
            tracing::info!(target: "app", "inside");
        });
    });
    let text = logs.text();
    assert_eq!(
        text.matches("/orders").count(),
        0,
        "outer fields are not repeated: {text}"
    );
    assert_eq!(
        text.matches("\"step\"").count(),
        1,
        "one copy of the span's fields: {text}"
    );
    let lines = logs.json_lines();
    let inside = &lines[0];
    assert_eq!(
        inside["span"],
        serde_json::json!({ "name": "work", "step": 2 })
    );
    assert_eq!(
        inside["spans"],
        serde_json::json!([{ "name": "request" }, { "name": "work" }])
    );
}

#[test]
fn a_refused_export_is_logged_once_with_its_endpoint() {
    // A loopback port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let endpoint = format!("http://{}", closed.local_addr().expect("its address"));
    drop(closed);
    let logs = Captured::default();
    let writer = logs.clone();
    let parts = catga_telemetry::builder()
        .otlp_endpoint(&endpoint)
        .log_filter("info") // the default
        .log_writer(move || writer.clone())
        .prometheus(false)
        .build()
        .expect("telemetry builds");
    {
        // Thread-local: the export thread reaches the lines through the telemetry itself.
        let _default = tracing::dispatcher::set_default(&parts.dispatch);
        for name in ["first", "second", "third"] {
            tracing::info_span!("unit", otel.name = name).in_scope(|| {});
            parts.guard.flush().expect_err("nothing listens");
        }
        tracing::info_span!("pending at shutdown").in_scope(|| {});
    }
    drop(parts.guard);

    let url = format!("{endpoint}/v1/traces");
    let lines = logs.json_lines();
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "catga_telemetry")
        .collect();
    assert_eq!(
        ours.len(),
        2,
        "one line for the failing exports, one for the shutdown: {ours:#?}"
    );
    let failing = ours[0];
    assert_eq!(failing["level"], "WARN");
    assert!(
        failing["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("could not export spans")),
        "{failing}"
    );
    assert_eq!(failing["fields"]["endpoint"], url.as_str());
    assert!(
        failing["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP export failed")),
        "the exporter's cause: {failing}"
    );
    let lost = ours[1];
    assert_eq!(lost["level"], "WARN");
    assert_eq!(
        lost["message"],
        "spans were lost when shutting telemetry down"
    );
    assert_eq!(lost["fields"]["endpoint"], url.as_str());
}
