//! Commands and queries over real HTTP: bodies, replies, and the headers that become the
//! message's context (`Idempotency-Key`, `traceparent`, forwarded ones; `Request-Timeout` is
//! in `timeouts.rs`).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, StatusCode};
use catga_axum::Routes;
use catga_core::prelude::*;
use common::Server;

#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub customer: String,
    pub quantity: u32,
}

impl Validate for PlaceOrder {
    fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.customer.is_empty() {
            errors.add("customer", "must not be empty");
        }
        if self.quantity == 0 {
            errors.add("quantity", "must be at least 1");
        }
        errors.into_result()
    }
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CancelOrder {
    pub id: u64,
}

/// Counted by its handler: a retried request must not run it twice.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Charge {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub customer: String,
}

#[query(output = Option<Order>)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetOrder {
    pub id: u64,
}

/// Replies with what its handler saw in the context.
#[command(output = Seen)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspect {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub message_id: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub tenant: Option<String>,
    pub secret: Option<String>,
    pub remaining_ms: Option<u128>,
}

#[command]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sleep {
    pub ms: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// Fails its first run with a conflict and succeeds after: what a client's retry of a failed
/// request meets.
#[command(output = u64)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub cents: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the account is locked")]
pub struct Locked;

impl ErrorCode for Locked {
    fn code(&self) -> &'static str {
        "accounts.locked"
    }
}

static PLACED: AtomicU64 = AtomicU64::new(0);
static TRANSFERS: AtomicU64 = AtomicU64::new(0);
static CHARGED: AtomicU64 = AtomicU64::new(0);

#[handler]
async fn place(_cmd: PlaceOrder) -> Result<u64, Never> {
    Ok(PLACED.fetch_add(1, Ordering::SeqCst) + 1)
}

#[handler]
async fn cancel(_cmd: CancelOrder) -> Result<(), Never> {
    Ok(())
}

#[handler]
async fn transfer(_cmd: Transfer) -> Result<u64, Locked> {
    let run = TRANSFERS.fetch_add(1, Ordering::SeqCst) + 1;
    if run == 1 { Err(Locked) } else { Ok(run) }
}

#[handler]
async fn charge(_cmd: Charge) -> Result<u64, Never> {
    Ok(CHARGED.fetch_add(1, Ordering::SeqCst) + 1)
}

#[handler]
async fn get_order(query: GetOrder) -> Result<Option<Order>, Never> {
    Ok((query.id == 7).then(|| Order {
        id: 7,
        customer: "ada".into(),
    }))
}

#[handler]
async fn inspect(_cmd: Inspect, ctx: &Context) -> Result<Seen, Never> {
    let header = |name: &str| ctx.header(name).map(str::to_string);
    Ok(Seen {
        message_id: ctx.message_id().to_string(),
        traceparent: header("traceparent"),
        tracestate: header("tracestate"),
        tenant: header("x-tenant"),
        secret: header("x-secret"),
        remaining_ms: ctx.remaining().map(|d| d.as_millis()),
    })
}

#[handler]
async fn sleep(cmd: Sleep) -> Result<(), Never> {
    tokio::time::sleep(Duration::from_millis(cmd.ms)).await;
    Ok(())
}

fn app() -> Catga<impl Layer> {
    Catga::builder()
        .layer(Idempotency::default())
        .layer(Validation)
        .build()
        .expect("the application builds")
}

/// The routes most tests use: a 10 s route timeout, `x-tenant` forwarded, a 1 KiB body limit.
async fn server() -> Server {
    let routes = Routes::new(app())
        .command::<PlaceOrder>("/orders")
        .command::<CancelOrder>("/orders/cancel")
        .command::<Charge>("/charges")
        .command::<Inspect>("/inspect")
        .command::<Sleep>("/sleep")
        .query::<GetOrder>("/orders/get")
        .timeout(Duration::from_secs(10))
        .forward_header(HeaderName::from_static("x-tenant"))
        .body_limit(1024);
    Server::start(Router::new().merge(routes).fallback(catga_axum::not_found)).await
}

#[tokio::test]
async fn a_command_answers_its_reply_as_json() {
    let server = server().await;
    let reply = server
        .post_json("/orders", r#"{"customer":"ada","quantity":2}"#, &[])
        .await;
    assert!(
        reply
            .json(StatusCode::OK)
            .as_u64()
            .is_some_and(|id| id >= 1)
    );
}

#[tokio::test]
async fn a_command_without_output_answers_204() {
    let server = server().await;
    let reply = server.post_json("/orders/cancel", r#"{"id":7}"#, &[]).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn a_query_answers_by_get_and_by_post() {
    let server = server().await;
    let by_get = server.get("/orders/get?id=7").await;
    assert_eq!(
        by_get.json(StatusCode::OK),
        serde_json::json!({"id": 7, "customer": "ada"})
    );
    let by_post = server.post_json("/orders/get", r#"{"id":7}"#, &[]).await;
    assert_eq!(by_post.json(StatusCode::OK)["customer"], "ada");
    let none = server.get("/orders/get?id=8").await;
    assert_eq!(none.json(StatusCode::OK), serde_json::Value::Null);
    let bad = server.get("/orders/get?id=seven").await;
    let problem = bad.problem(StatusCode::BAD_REQUEST, "invalid_query");
    assert!(
        problem["detail"].as_str().is_some_and(|d| d.contains("id")),
        "{problem}"
    );
}

#[tokio::test]
async fn a_retried_idempotency_key_gets_the_stored_reply_without_running_the_handler() {
    let server = server().await;
    let key = [("idempotency-key", "charge-5f1c")];
    let first = server.post_json("/charges", r#"{"cents":100}"#, &key).await;
    let first = first.json(StatusCode::OK);
    let runs = CHARGED.load(Ordering::SeqCst);

    let retry = server.post_json("/charges", r#"{"cents":100}"#, &key).await;
    assert_eq!(retry.json(StatusCode::OK), first, "the stored reply");
    assert_eq!(CHARGED.load(Ordering::SeqCst), runs, "the handler ran once");

    let quoted = [("idempotency-key", "\"charge-5f1c\"")];
    let same = server
        .post_json("/charges", r#"{"cents":100}"#, &quoted)
        .await;
    assert_eq!(
        same.json(StatusCode::OK),
        first,
        "the draft's quoted form is the same key"
    );

    let other = [("idempotency-key", "charge-other")];
    let new = server
        .post_json("/charges", r#"{"cents":100}"#, &other)
        .await;
    assert_ne!(
        new.json(StatusCode::OK),
        first,
        "another key runs the handler"
    );
    assert_eq!(CHARGED.load(Ordering::SeqCst), runs + 1);
}

#[tokio::test]
async fn a_failed_request_is_not_stored_and_its_retry_runs_again() {
    let routes = Routes::new(app())
        .command::<Transfer>("/transfers")
        .command::<PlaceOrder>("/orders")
        .map_code("accounts.locked", StatusCode::CONFLICT);
    let server = Server::start(routes.into_router()).await;

    // A domain error (409): nothing stored, the retry runs the handler, and its success is
    // what a later retry gets.
    let key = [("idempotency-key", "transfer-9b2e")];
    let failed = server.post_json("/transfers", r#"{"cents":5}"#, &key).await;
    failed.problem(StatusCode::CONFLICT, "accounts.locked");
    let retried = server.post_json("/transfers", r#"{"cents":5}"#, &key).await;
    assert_eq!(retried.json(StatusCode::OK), 2, "the handler ran again");
    let again = server.post_json("/transfers", r#"{"cents":5}"#, &key).await;
    assert_eq!(again.json(StatusCode::OK), 2, "the stored success");
    assert_eq!(TRANSFERS.load(Ordering::SeqCst), 2);

    // A validation failure (422): the corrected request with the same key runs; after it,
    // the key answers its reply whatever the body says.
    let key = [("idempotency-key", "order-41d7")];
    let invalid = server
        .post_json("/orders", r#"{"customer":"","quantity":1}"#, &key)
        .await;
    invalid.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    let fixed = server
        .post_json("/orders", r#"{"customer":"ada","quantity":1}"#, &key)
        .await;
    let id = fixed.json(StatusCode::OK);
    let other_body = server
        .post_json("/orders", r#"{"customer":"bob","quantity":9}"#, &key)
        .await;
    assert_eq!(
        other_body.json(StatusCode::OK),
        id,
        "the first stored reply, not a 422"
    );
}

#[tokio::test]
async fn the_idempotency_key_is_the_message_id() {
    let server = server().await;
    let key = [("idempotency-key", "inspect-1")];
    let seen = server
        .post_json("/inspect", "{}", &key)
        .await
        .json(StatusCode::OK);
    assert_eq!(
        seen["message_id"],
        catga_axum::message_id_for_key("inspect-1").to_string()
    );
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_refused() {
    let server = server().await;
    let long = "k".repeat(256);
    for bad in ["has space", long.as_str(), "a\"b", "\"\""] {
        let reply = server
            .post_json("/charges", r#"{"cents":1}"#, &[("idempotency-key", bad)])
            .await;
        let problem = reply.problem(StatusCode::BAD_REQUEST, "invalid_header");
        assert_eq!(problem["header"], "idempotency-key");
    }
}

#[tokio::test]
async fn traceparent_and_tracestate_reach_the_handlers_context() {
    let server = server().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = [("traceparent", traceparent), ("tracestate", "vendor=abc")];
    let seen = server
        .post_json("/inspect", "{}", &headers)
        .await
        .json(StatusCode::OK);
    assert_eq!(seen["traceparent"], traceparent);
    assert_eq!(seen["tracestate"], "vendor=abc");
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_not_refused() {
    let server = server().await;
    let headers = [
        ("traceparent", "00-not-a-trace-01"),
        ("tracestate", "vendor=abc"),
    ];
    let seen = server
        .post_json("/inspect", "{}", &headers)
        .await
        .json(StatusCode::OK);
    assert_eq!(seen["traceparent"], serde_json::Value::Null);
    assert_eq!(seen["tracestate"], serde_json::Value::Null);
}

#[tokio::test]
async fn only_allow_listed_headers_are_forwarded() {
    let server = server().await;
    let headers = [("x-tenant", "acme"), ("x-secret", "hunter2")];
    let seen = server
        .post_json("/inspect", "{}", &headers)
        .await
        .json(StatusCode::OK);
    assert_eq!(seen["tenant"], "acme");
    assert_eq!(seen["secret"], serde_json::Value::Null);
}

#[tokio::test]
async fn an_invalid_message_answers_422_with_every_field() {
    let server = server().await;
    let reply = server
        .post_json("/orders", r#"{"customer":"","quantity":0}"#, &[])
        .await;
    let problem = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "validation");
    assert_eq!(
        problem["errors"],
        serde_json::json!([
            {"field": "customer", "message": "must not be empty"},
            {"field": "quantity", "message": "must be at least 1"},
        ])
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_answers_400_with_where() {
    let server = server().await;
    let reply = server
        .post_json("/orders", r#"{"customer": "ada",}"#, &[])
        .await;
    let problem = reply.problem(StatusCode::BAD_REQUEST, "invalid_json");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("line 1 column"), "{detail}");
}

#[tokio::test]
async fn json_that_is_not_the_message_answers_400_naming_the_field() {
    let server = server().await;
    let reply = server
        .post_json("/orders", r#"{"customer":"ada"}"#, &[])
        .await;
    let problem = reply.problem(StatusCode::BAD_REQUEST, "invalid_body");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("quantity"), "{detail}");
}

#[tokio::test]
async fn a_missing_body_or_content_type_answers_415() {
    let server = server().await;
    let empty = server.send(Method::POST, "/orders", &[], "").await;
    empty.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let untyped = server
        .send(
            Method::POST,
            "/orders",
            &[],
            r#"{"customer":"ada","quantity":1}"#,
        )
        .await;
    untyped.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let text = server
        .send(
            Method::POST,
            "/orders",
            &[("content-type", "text/plain")],
            r#"{"customer":"ada","quantity":1}"#,
        )
        .await;
    text.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
}

#[tokio::test]
async fn an_empty_json_body_answers_400_saying_it_is_empty() {
    let server = server().await;
    let reply = server.post_json("/orders", "", &[]).await;
    let problem = reply.problem(StatusCode::BAD_REQUEST, "invalid_json");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("empty"), "{detail}");
    let suffixed = server
        .send(
            Method::POST,
            "/orders",
            &[("content-type", "application/merge-patch+json")],
            "",
        )
        .await;
    suffixed.problem(StatusCode::BAD_REQUEST, "invalid_json");
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413() {
    let server = server().await;
    let customer = "a".repeat(2048);
    let body = format!(r#"{{"customer":"{customer}","quantity":1}}"#);
    let reply = server.post_json("/orders", &body, &[]).await;
    let problem = reply.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("1024"), "the limit: {detail}");
}

/// How long a raw client waits for the server's answer: far longer than an answer takes,
/// far shorter than a server waiting for a body that never comes.
const RAW_WAIT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_declared_content_length_over_the_limit_answers_413_before_the_body_is_read() {
    let server = server().await;
    // 5 MB declared, 31 bytes sent: a server that read the body first would wait for the
    // rest, and this client would see nothing before its timeout.
    let head =
        "POST /orders HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n";
    let answer = server
        .raw(head, br#"{"customer":"ada","quantity":1}"#, RAW_WAIT)
        .await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}

#[tokio::test]
async fn expect_100_continue_over_the_limit_answers_413_without_continue() {
    let server = server().await;
    let head = "POST /orders HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n";
    // The client sends no body until it is told to continue, which it must not be.
    let answer = server.raw(head, b"", RAW_WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[tokio::test]
async fn expect_100_continue_within_the_limit_is_told_to_continue() {
    let server = server().await;
    let body = br#"{"customer":"ada","quantity":1}"#;
    let head = format!(
        "POST /orders HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n",
        body.len()
    );
    // The body goes without waiting for the `100 Continue` (as curl does after a second):
    // the server sends it anyway, as it starts reading, and then the answer.
    let answer = server.raw(&head, body, RAW_WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    assert!(answer.contains("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_answers_413_as_it_streams() {
    let server = server().await;
    let head = "POST /orders HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n";
    let chunk = "a".repeat(800);
    // Two chunks of 800 bytes, over the 1 KiB limit by the second; no length declared.
    let body = format!("320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n");
    let answer = server.raw(head, body.as_bytes(), RAW_WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");

    let small = r#"{"customer":"ada","quantity":1}"#;
    let body = format!("{:x}\r\n{small}\r\n0\r\n\r\n", small.len());
    let answer = server.raw(head, body.as_bytes(), RAW_WAIT).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn a_wrong_method_answers_405_with_allow() {
    let server = server().await;
    let reply = server.get("/orders").await;
    reply.problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.header("allow"), Some("POST"));
}

#[tokio::test]
async fn an_unknown_route_answers_404_through_the_fallback() {
    let server = server().await;
    let reply = server.get("/nowhere").await;
    reply.problem(StatusCode::NOT_FOUND, "not_found");
}

/// A handler of the user's own, with the crate's extractor, reply and problem.
async fn own_inspect(
    axum::extract::State(app): axum::extract::State<Catga>,
    catga_axum::MessageContext(ctx): catga_axum::MessageContext,
    axum::Json(cmd): axum::Json<Inspect>,
) -> Result<catga_axum::Reply<Seen>, catga_axum::Problem> {
    Ok(catga_axum::Reply(app.send_with(cmd, ctx).await?))
}

#[tokio::test]
async fn the_extractor_applies_the_rules_a_layer_gives_it() {
    let rules = catga_axum::ContextRules::new().forward_header(HeaderName::from_static("x-tenant"));
    let app = Catga::builder().build().expect("the application builds");
    let router = Router::new()
        .route("/own", axum::routing::post(own_inspect))
        .layer(axum::Extension(rules))
        .with_state(app);
    let server = Server::start(router).await;
    let seen = server
        .post_json("/own", "{}", &[("x-tenant", "acme")])
        .await;
    assert_eq!(seen.json(StatusCode::OK)["tenant"], "acme");
    let bad = server
        .post_json("/own", "{}", &[("request-timeout", "later")])
        .await;
    bad.problem(StatusCode::BAD_REQUEST, "invalid_header");
}
