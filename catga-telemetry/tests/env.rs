//! The environment, through the public API: one test in its own binary, since it changes the
//! process's variables.

#[test]
fn otel_variables_are_honoured_and_grpc_gets_a_way_out() {
    // SAFETY: the only test of this binary, run before any thread of ours reads the
    // environment; the harness's own threads do not read it.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    }
    let error = catga_telemetry::builder()
        .log_writer(std::io::sink)
        .build()
        .expect_err("grpc is not built in");
    assert!(matches!(
        error,
        catga_telemetry::Error::UnsupportedProtocol {
            var: "OTEL_EXPORTER_OTLP_PROTOCOL",
            ..
        }
    ));
    assert!(
        error
            .to_string()
            .contains("help: set `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`")
    );

    // `OTEL_TRACES_EXPORTER=none`: nothing exported, so the protocol does not matter.
    unsafe {
        std::env::set_var("OTEL_TRACES_EXPORTER", "none");
    }
    let parts = catga_telemetry::builder()
        .log_writer(std::io::sink)
        .build()
        .expect("nothing to export, nothing to refuse");
    assert!(!parts.guard.exports_traces());

    // The builder wins over the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_SDK_DISABLED", "true");
    }
    let parts = catga_telemetry::builder()
        .traces(true)
        .log_writer(std::io::sink)
        .build()
        .expect("builds");
    assert!(parts.guard.exports_traces());
    let parts = catga_telemetry::builder()
        .log_writer(std::io::sink)
        .build()
        .expect("builds");
    assert!(!parts.guard.exports_traces(), "OTEL_SDK_DISABLED=true");

    unsafe {
        std::env::set_var("RUST_LOG", "info,[");
    }
    let error = catga_telemetry::builder()
        .log_writer(std::io::sink)
        .build()
        .expect_err("not a filter");
    assert!(matches!(
        error,
        catga_telemetry::Error::Filter {
            var: Some("RUST_LOG"),
            ..
        }
    ));
    unsafe {
        std::env::remove_var("RUST_LOG");
        std::env::set_var("CATGA_LOG_FORMAT", "yaml");
    }
    let error = catga_telemetry::builder()
        .log_writer(std::io::sink)
        .build()
        .expect_err("not a format");
    assert!(
        error.to_string().contains("help: use `json` or `text`"),
        "{error}"
    );
}
