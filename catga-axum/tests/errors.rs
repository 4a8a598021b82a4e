//! catga errors as RFC 9457 problems over real HTTP: domain codes mapped and unmapped,
//! handler errors that must not leak, and the protective behaviours' refusals with
//! `Retry-After`.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use catga_axum::Routes;
use catga_core::behavior::{RateLimit, Trip};
use catga_core::prelude::*;
use common::Server;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub item: u64,
    pub quantity: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("only {available} left of item {item}")]
    OutOfStock { item: u64, available: u32 },
    #[error("item {0} was discontinued")]
    Discontinued(u64),
}

impl ErrorCode for StockError {
    fn code(&self) -> &'static str {
        match self {
            StockError::OutOfStock { .. } => "stock.out_of_stock",
            StockError::Discontinued(_) => "stock.discontinued",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            StockError::OutOfStock { item, available } => {
                Some(serde_json::json!({ "item": item, "available": available }))
            }
            StockError::Discontinued(_) => None,
        }
    }
}

#[handler]
async fn reserve(cmd: Reserve) -> Result<u64, StockError> {
    match cmd.item {
        1 => Err(StockError::OutOfStock {
            item: 1,
            available: 2,
        }),
        2 => Err(StockError::Discontinued(2)),
        _ => Ok(cmd.item),
    }
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Migrate {}

#[derive(Debug, thiserror::Error)]
#[error("connection to postgres://admin:hunter2@10.0.0.5/orders refused")]
pub struct Leaky;

#[handler]
async fn migrate(_cmd: Migrate) -> Result<(), Leaky> {
    Err(Leaky)
}

#[command(rate_limit = "1/s")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendSms {}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[handler]
async fn sms(_cmd: SendSms) -> Result<(), Never> {
    Ok(())
}

#[query(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetQuote {}

#[derive(Debug, thiserror::Error)]
#[error("pricing unreachable")]
pub struct Unreachable;

impl Retryable for Unreachable {
    fn is_retryable(&self) -> bool {
        true
    }
}

#[handler]
async fn quote(_q: GetQuote) -> Result<u64, Unreachable> {
    Err(Unreachable)
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Explode {}

// On purpose: what the HTTP edge does with a handler that panics.
#[handler(allow(panic_in_handler))]
async fn explode(_cmd: Explode) -> Result<(), Never> {
    panic!("the handler's secret state");
}

async fn server() -> Server {
    let app = Catga::builder()
        .layer(CircuitBreaker::new(Trip::ConsecutiveFailures(1)).cool_down(Duration::from_secs(30)))
        .layer(RateLimit::declared())
        .build()
        .expect("the application builds");
    let routes = Routes::new(app)
        .command::<Reserve>("/reserve")
        .command::<Migrate>("/migrate")
        .command::<SendSms>("/sms")
        .command::<Explode>("/explode")
        .query::<GetQuote>("/quote")
        .map_code("stock.out_of_stock", StatusCode::CONFLICT);
    Server::start(routes.into_router()).await
}

#[tokio::test]
async fn a_mapped_domain_code_answers_its_status_with_details() {
    let server = server().await;
    let reply = server
        .post_json("/reserve", r#"{"item":1,"quantity":5}"#, &[])
        .await;
    let problem = reply.problem(StatusCode::CONFLICT, "stock.out_of_stock");
    assert_eq!(
        problem["details"],
        serde_json::json!({"item": 1, "available": 2})
    );
    assert!(
        problem["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("urn:uuid:"))
    );
    assert!(!reply.text().contains("only 2 left"), "{}", reply.text());
    assert_eq!(problem.get("detail"), None, "code and details say it all");
}

#[tokio::test]
async fn an_unmapped_domain_code_answers_500_with_its_code_only() {
    let server = server().await;
    let reply = server
        .post_json("/reserve", r#"{"item":2,"quantity":5}"#, &[])
        .await;
    let problem = reply.problem(StatusCode::INTERNAL_SERVER_ERROR, "stock.discontinued");
    assert_eq!(problem["detail"], "the request could not be handled");
    assert!(
        !reply.text().contains("was discontinued"),
        "{}",
        reply.text()
    );
    assert!(!reply.text().contains("item 2"), "{}", reply.text());
}

#[tokio::test]
async fn a_handler_error_answers_500_without_its_message() {
    let server = server().await;
    let reply = server.post_json("/migrate", "{}", &[]).await;
    let problem = reply.problem(StatusCode::INTERNAL_SERVER_ERROR, "handler");
    let text = reply.text();
    for secret in ["hunter2", "postgres", "10.0.0.5", "migrate", "Migrate"] {
        assert!(!text.contains(secret), "{secret} leaked: {problem}");
    }
}

#[tokio::test]
async fn a_rate_limited_request_answers_429_with_retry_after() {
    let server = server().await;
    let first = server.post_json("/sms", "{}", &[]).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text());
    let second = server.post_json("/sms", "{}", &[]).await;
    second.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(second.header("retry-after"), Some("1"));
}

#[tokio::test]
async fn an_open_circuit_answers_503_with_retry_after() {
    let server = server().await;
    let failed = server.get("/quote").await;
    failed.problem(StatusCode::INTERNAL_SERVER_ERROR, "handler");
    let refused = server.get("/quote").await;
    refused.problem(StatusCode::SERVICE_UNAVAILABLE, "circuit_open");
    let after: u64 = refused
        .header("retry-after")
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    assert!((29..=30).contains(&after), "Retry-After: {after}");
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_and_the_server_goes_on() {
    let server = server().await;
    let reply = server.post_json("/explode", "{}", &[]).await;
    reply.problem(StatusCode::INTERNAL_SERVER_ERROR, "panic");
    assert!(!reply.text().contains("secret"), "{}", reply.text());
    let after = server
        .post_json("/reserve", r#"{"item":3,"quantity":1}"#, &[])
        .await;
    assert_eq!(after.json(StatusCode::OK), 3);
}
