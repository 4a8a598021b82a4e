//! The Prometheus recorder: what `/metrics` serves for catga's metrics, parsed back.

mod common;

use std::time::Duration;

use catga_core::prelude::*;
use catga_core::telemetry::metric;
use catga_core::transport::MemoryTransport;
use common::exposition::Exposition;

#[event]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pinged {
    pub n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

pub mod pings {
    use super::*;

    #[handler]
    async fn pinged(_event: &Pinged) -> Result<(), Never> {
        Ok(())
    }
}

fn telemetry() -> catga_telemetry::Parts {
    catga_telemetry::builder()
        .traces(false)
        .log_writer(std::io::sink)
        .build()
        .expect("telemetry builds")
}

#[test]
fn durations_have_catga_buckets_so_300_us_and_3_ms_are_told_apart() {
    let parts = telemetry();
    let recorder = parts.recorder.expect("prometheus is on by default");
    let labels = [
        ("messaging_system", "nats"),
        ("messaging_destination_name", "Reserve"),
        ("messaging_operation_name", "process"),
    ];
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!(metric::PROCESS_DURATION, &labels).record(0.000_3);
        metrics::histogram!(metric::PROCESS_DURATION, &labels).record(0.003);
    });
    let scrape = Exposition::parse(&parts.guard.render());

    let name = metric::PROCESS_DURATION;
    assert!(name.ends_with("_seconds"), "the unit is in the name");
    assert_eq!(
        scrape.types.get(name).map(String::as_str),
        Some("histogram")
    );
    assert!(
        scrape.help.get(name).is_some_and(|h| h.contains("process")),
        "{:?}",
        scrape.help
    );
    let bucket = |le: &str| {
        let with: Vec<(&str, &str)> = labels.iter().copied().chain([("le", le)]).collect();
        let found = scrape.find(&format!("{name}_bucket"), &with);
        assert_eq!(found.len(), 1, "one `le={le}` bucket: {scrape:#?}");
        found[0].value
    };
    // Cumulative counts: 300 µs is past 250 µs and within 500 µs; 3 ms within 5 ms.
    assert_eq!(bucket("0.00025"), 0.0);
    assert_eq!(bucket("0.0005"), 1.0);
    assert_eq!(bucket("0.0025"), 1.0);
    assert_eq!(bucket("0.005"), 2.0);
    assert_eq!(bucket("+Inf"), 2.0);
    // Every boundary of catga's buckets is there, and no other.
    let boundaries = scrape.find(&format!("{name}_bucket"), &labels).len();
    assert_eq!(boundaries, metric::DURATION_BUCKETS.len() + 1);
    let count = scrape.find(&format!("{name}_count"), &labels);
    assert_eq!(count[0].value, 2.0);
    let sum = scrape.find(&format!("{name}_sum"), &labels);
    assert!((sum[0].value - 0.0033).abs() < 1e-9, "{sum:?}");
}

#[test]
fn a_real_publish_is_counted_and_timed_with_help_and_type() {
    let parts = telemetry();
    let recorder = parts.recorder.expect("prometheus is on by default");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A local recorder is per thread: the runtime and its tasks run on this one.
    let _local = metrics::set_default_local_recorder(&recorder);
    runtime.block_on(async {
        let app = Catga::builder()
            .transport(MemoryTransport::new())
            .service("pings")
            .handlers(|h| h.name.starts_with("prometheus::pings::"))
            .build()
            .expect("the app builds");
        let serving = app.serve().await.expect("serves");
        app.publish(Pinged { n: 1 }).await.expect("published");
        // The consumer records once the delivery is settled.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !parts
            .guard
            .render()
            .contains(metric::CLIENT_CONSUMED_MESSAGES)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                parts.guard.render()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        serving.shutdown().await;
    });
    let scrape = Exposition::parse(&parts.guard.render());
    let publish = [
        ("messaging_system", "catga"),
        ("messaging_destination_name", "Pinged"),
        ("messaging_operation_name", "publish"),
    ];
    let process = [
        ("messaging_system", "catga"),
        ("messaging_destination_name", "Pinged"),
        ("messaging_operation_name", "process"),
    ];
    let sent = scrape.find(metric::CLIENT_SENT_MESSAGES, &publish);
    assert_eq!(sent.len(), 1, "{scrape:#?}");
    assert_eq!(sent[0].value, 1.0);
    assert!(
        !sent[0].labels.contains_key("error_type"),
        "no error, no `error_type`"
    );
    let consumed = scrape.find(metric::CLIENT_CONSUMED_MESSAGES, &process);
    assert_eq!(consumed[0].value, 1.0);
    for (name, kind) in [
        (metric::CLIENT_SENT_MESSAGES, "counter"),
        (metric::CLIENT_CONSUMED_MESSAGES, "counter"),
        (metric::CLIENT_OPERATION_DURATION, "histogram"),
        (metric::PROCESS_DURATION, "histogram"),
    ] {
        assert_eq!(
            scrape.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
        assert!(
            scrape.help.get(name).is_some_and(|h| !h.is_empty()),
            "{name}"
        );
    }
    let timed = scrape.find(
        &format!("{}_count", metric::CLIENT_OPERATION_DURATION),
        &publish,
    );
    assert_eq!(timed[0].value, 1.0);
}

#[test]
fn catga_counters_are_described_too() {
    let parts = telemetry();
    let recorder = parts.recorder.expect("prometheus is on by default");
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("catga_dead_letters_total", "message" => "Reserve").increment(3);
        metrics::gauge!("catga_circuit_breaker_state", "message" => "Reserve").set(1.0);
    });
    let scrape = Exposition::parse(&parts.guard.render());
    assert_eq!(
        scrape
            .types
            .get("catga_dead_letters_total")
            .map(String::as_str),
        Some("counter")
    );
    assert!(scrape.help.contains_key("catga_dead_letters_total"));
    assert_eq!(
        scrape.find("catga_dead_letters_total", &[("message", "Reserve")])[0].value,
        3.0
    );
    assert_eq!(
        scrape
            .types
            .get("catga_circuit_breaker_state")
            .map(String::as_str),
        Some("gauge")
    );
    // The renderer a `/metrics` route takes renders the same.
    let render = parts.guard.renderer();
    assert!(render().contains("catga_dead_letters_total{message=\"Reserve\"} 3"));
}

#[test]
fn without_prometheus_there_is_nothing_to_render() {
    let parts = catga_telemetry::builder()
        .traces(false)
        .prometheus(false)
        .log_writer(std::io::sink)
        .build()
        .expect("telemetry builds");
    assert!(parts.recorder.is_none() && parts.guard.metrics().is_none());
    assert_eq!(parts.guard.render(), "");
}
