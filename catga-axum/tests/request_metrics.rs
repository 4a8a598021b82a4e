//! `http_server_request_duration_seconds` over real HTTP: one sample per request a command or
//! query route answers, labelled by method, route template, status and error type; none for
//! the probes or for paths no route serves.
//!
//! One test in a binary of its own: it installs the process's global recorder (the server's
//! tasks run on other threads), and a snapshot drains what it reads.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use catga_axum::{HTTP_SERVER_REQUEST_DURATION, Routes};
use catga_core::prelude::*;
use common::Server;
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub quantity: u32,
}

impl Validate for PlaceOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.quantity == 0 {
            errors.add("quantity", "must be at least 1");
        }
        errors.into_result()
    }
}

/// Sent to `/items/{id}/reserve`: the id in the path is not the message's, but it is in the
/// route's template, which the metric must name instead of the path.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub quantity: u32,
}

#[query(output = u32)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountOrders {}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Migrate {}

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("out of stock")]
    OutOfStock,
    #[error("the ledger is down")]
    LedgerDown,
}

impl ErrorCode for StockError {
    fn code(&self) -> &'static str {
        match self {
            StockError::OutOfStock => "stock.out_of_stock",
            StockError::LedgerDown => "stock.ledger_down",
        }
    }
}

#[handler]
async fn place(cmd: PlaceOrder) -> Result<u64, StockError> {
    Ok(u64::from(cmd.quantity))
}

#[handler]
async fn reserve(cmd: Reserve) -> Result<u64, StockError> {
    if cmd.quantity > 10 {
        Err(StockError::OutOfStock)
    } else {
        Ok(1)
    }
}

#[handler]
async fn count(_query: CountOrders) -> Result<u32, StockError> {
    Ok(3)
}

#[handler]
async fn migrate(_cmd: Migrate) -> Result<(), StockError> {
    Err(StockError::LedgerDown)
}

/// The labels of one sample, sorted by name, as `name=value`.
type Labels = Vec<String>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut labels: Labels = pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    labels.sort();
    labels
}

#[tokio::test]
async fn each_answered_request_is_one_sample_labelled_by_route_status_and_error() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let app = Catga::builder()
        .layer(Validation)
        .build()
        .expect("the application builds");
    let api = Routes::new(app)
        .command::<PlaceOrder>("/orders")
        .command::<Reserve>("/items/{id}/reserve")
        .command::<Migrate>("/migrations")
        .query::<CountOrders>("/orders/count")
        .map_code("stock.out_of_stock", StatusCode::CONFLICT)
        .body_limit(1024)
        .health()
        .metrics(String::new);
    let router = Router::new()
        .nest("/api", api.into_router())
        .fallback(catga_axum::not_found);
    let server = Server::start(router).await;

    let placed = server
        .post_json("/api/orders", r#"{"quantity":2}"#, &[])
        .await;
    assert_eq!(placed.status, StatusCode::OK);
    let counted = server.get("/api/orders/count").await;
    assert_eq!(counted.status, StatusCode::OK);
    for id in ["7", "8"] {
        let path = format!("/api/items/{id}/reserve");
        let conflict = server.post_json(&path, r#"{"quantity":50}"#, &[]).await;
        conflict.problem(StatusCode::CONFLICT, "stock.out_of_stock");
    }
    let invalid = server
        .post_json("/api/orders", r#"{"quantity":0}"#, &[])
        .await;
    invalid.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let failed = server.post_json("/api/migrations", "{}", &[]).await;
    failed.problem(StatusCode::INTERNAL_SERVER_ERROR, "stock.ledger_down");
    let wrong_method = server.get("/api/orders").await;
    wrong_method.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let invented = Method::from_bytes(b"PURGE").expect("a method token");
    let other_method = server.send(invented, "/api/orders", &[], "").await;
    other_method.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let head = "POST /api/orders HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n";
    let too_large = server.raw(head, b"{}", Duration::from_secs(2)).await;
    assert!(too_large.starts_with("HTTP/1.1 413 "), "{too_large}");

    // Not the routes' commands or queries: no sample.
    for path in ["/api/livez", "/api/readyz", "/api/metrics", "/nowhere"] {
        let reply = server.get(path).await;
        assert_ne!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }

    let mut samples: BTreeMap<Labels, usize> = BTreeMap::new();
    for (key, unit, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != HTTP_SERVER_REQUEST_DURATION {
            continue;
        }
        assert_eq!(unit, Some(Unit::Seconds), "described in seconds");
        let DebugValue::Histogram(values) = value else {
            panic!("{HTTP_SERVER_REQUEST_DURATION} is a histogram");
        };
        assert!(
            values
                .iter()
                .all(|seconds| seconds.0 >= 0.0 && seconds.0 < 10.0),
            "{values:?}"
        );
        let mut labels: Labels = key
            .key()
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        labels.sort();
        *samples.entry(labels).or_default() += values.len();
    }

    let expected: BTreeMap<Labels, usize> = [
        (
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/api/orders"),
                ("http_response_status_code", "200"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "GET"),
                ("http_route", "/api/orders/count"),
                ("http_response_status_code", "200"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/api/items/{id}/reserve"),
                ("http_response_status_code", "409"),
                ("error_type", "stock.out_of_stock"),
            ]),
            2,
        ),
        (
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/api/orders"),
                ("http_response_status_code", "422"),
                ("error_type", "validation"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/api/migrations"),
                ("http_response_status_code", "500"),
                ("error_type", "stock.ledger_down"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "GET"),
                ("http_route", "/api/orders"),
                ("http_response_status_code", "405"),
                ("error_type", "method_not_allowed"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "_OTHER"),
                ("http_route", "/api/orders"),
                ("http_response_status_code", "405"),
                ("error_type", "method_not_allowed"),
            ]),
            1,
        ),
        (
            labels(&[
                ("http_request_method", "POST"),
                ("http_route", "/api/orders"),
                ("http_response_status_code", "413"),
                ("error_type", "payload_too_large"),
            ]),
            1,
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(samples, expected);
}
