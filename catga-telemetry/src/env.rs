//! What the `OTEL_*` variables (and `RUST_LOG`, `CATGA_LOG_FORMAT`) say, read once.
//!
//! The variables and their meaning are the OpenTelemetry SDK environment variable
//! specification's
//! (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>) and the
//! OTLP exporter's (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>). The ones
//! decided here are those this crate acts on before the SDK sees anything: whether to export at
//! all, over which protocol, to which endpoint. The SDK and the exporter read the rest
//! themselves (resource, sampler, batch processor, headers, timeout).

use crate::error::Error;

/// Where variables are read from: the process environment, or a map in unit tests.
pub(crate) type Source<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment; a variable that is not Unicode counts as unset.
pub(crate) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's value, trimmed; `None` when unset or blank.
pub(crate) fn read(env: Source<'_>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Where OTLP/HTTP traces go when nothing says: the collector on this host.
pub(crate) const DEFAULT_ENDPOINT: &str = "http://localhost:4318";

/// The path of the traces signal under a base endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// Whether spans are exported: not when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
///
/// # Errors
/// [`Error::UnsupportedExporter`] for an exporter other than `otlp` and `none`.
pub(crate) fn traces_enabled(env: Source<'_>) -> Result<bool, Error> {
    // The spec's booleans: only a case-insensitive `true` is true.
    if read(env, "OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(false);
    }
    let Some(value) = read(env, "OTEL_TRACES_EXPORTER") else {
        return Ok(true);
    };
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    if names.iter().all(|n| n.eq_ignore_ascii_case("none")) {
        Ok(false)
    } else if names.iter().all(|n| n.eq_ignore_ascii_case("otlp")) {
        Ok(true)
    } else {
        Err(Error::UnsupportedExporter { value })
    }
}

/// Checks the OTLP protocol: `http/protobuf` or unset.
///
/// # Errors
/// [`Error::UnsupportedProtocol`] for `grpc`, `http/json` or anything else.
pub(crate) fn check_protocol(env: Source<'_>) -> Result<(), Error> {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(value) = read(env, var) {
            // The signal's own variable wins over the general one.
            return if value == "http/protobuf" {
                Ok(())
            } else {
                Err(Error::UnsupportedProtocol { var, value })
            };
        }
    }
    Ok(())
}

/// The full URL traces are sent to: the builder's base endpoint plus `/v1/traces`, else
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as written, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
/// `/v1/traces`, else `http://localhost:4318/v1/traces`.
///
/// # Errors
/// [`Error::InvalidEndpoint`] when it is not an `http(s)://` URL; [`Error::TlsDisabled`] for
/// `https://` without the `tls` feature.
pub(crate) fn traces_endpoint(env: Source<'_>, base: Option<&str>) -> Result<String, Error> {
    let (endpoint, from) = if let Some(base) = base {
        (with_traces_path(base), "the builder's `otlp_endpoint`")
    } else if let Some(full) = read(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        (full, "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`")
    } else if let Some(base) = read(env, "OTEL_EXPORTER_OTLP_ENDPOINT") {
        (with_traces_path(&base), "`OTEL_EXPORTER_OTLP_ENDPOINT`")
    } else {
        (with_traces_path(DEFAULT_ENDPOINT), "the default")
    };
    let lower = endpoint.to_ascii_lowercase();
    if lower.starts_with("https://") {
        if cfg!(feature = "tls") {
            Ok(endpoint)
        } else {
            Err(Error::TlsDisabled { endpoint })
        }
    } else if lower.starts_with("http://") && endpoint.len() > "http://".len() {
        Ok(endpoint)
    } else {
        Err(Error::InvalidEndpoint { endpoint, from })
    }
}

/// `base` with the traces path appended, as the spec says for the signal-less variable.
fn with_traces_path(base: &str) -> String {
    format!("{}{TRACES_PATH}", base.trim().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn exporting_is_on_unless_disabled_or_none() {
        assert!(traces_enabled(&env(&[])).unwrap());
        assert!(traces_enabled(&env(&[("OTEL_TRACES_EXPORTER", "otlp")])).unwrap());
        assert!(!traces_enabled(&env(&[("OTEL_TRACES_EXPORTER", "none")])).unwrap());
        assert!(!traces_enabled(&env(&[("OTEL_SDK_DISABLED", "TRUE")])).unwrap());
        // Only `true` is true.
        assert!(traces_enabled(&env(&[("OTEL_SDK_DISABLED", "1")])).unwrap());
        let zipkin = traces_enabled(&env(&[("OTEL_TRACES_EXPORTER", "zipkin")]));
        assert!(matches!(zipkin, Err(Error::UnsupportedExporter { value }) if value == "zipkin"));
    }

    #[test]
    fn grpc_is_refused_with_a_way_out() {
        let error = check_protocol(&env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` is not supported"));
        assert!(message.contains("help: set `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`"));
        // The signal's variable wins.
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(check_protocol(&both).is_ok());
        assert!(check_protocol(&env(&[])).is_ok());
        let json = check_protocol(&env(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")]));
        assert!(matches!(
            json,
            Err(Error::UnsupportedProtocol {
                var: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                ..
            })
        ));
    }

    #[test]
    fn the_endpoint_follows_the_spec_order() {
        assert_eq!(
            traces_endpoint(&env(&[]), None).unwrap(),
            "http://localhost:4318/v1/traces"
        );
        let general = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            traces_endpoint(&general, None).unwrap(),
            "http://collector:4318/v1/traces"
        );
        let both = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        // The signal's variable is used as written.
        assert_eq!(
            traces_endpoint(&both, None).unwrap(),
            "http://traces:9999/custom"
        );
        // The builder wins over both.
        assert_eq!(
            traces_endpoint(&both, Some("http://127.0.0.1:1234")).unwrap(),
            "http://127.0.0.1:1234/v1/traces"
        );
        let bad = traces_endpoint(
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
            None,
        );
        assert!(matches!(bad, Err(Error::InvalidEndpoint { .. })));
    }

    #[test]
    fn https_needs_the_tls_feature() {
        let secure = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")]);
        let result = traces_endpoint(&secure, None);
        if cfg!(feature = "tls") {
            assert_eq!(result.unwrap(), "https://collector:4318/v1/traces");
        } else {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains("help: enable the `tls` feature"),
                "{message}"
            );
        }
    }
}
