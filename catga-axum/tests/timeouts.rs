//! `Request-Timeout` over real HTTP: the header sets the message's deadline, capped by the
//! route's timeout; a request past it answers 504; a malformed value is refused.

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use catga_axum::Routes;
use catga_core::prelude::*;
use common::Server;

/// Replies with the time its handler had left.
#[command(output = Seen)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspect {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
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

#[handler]
async fn inspect(_cmd: Inspect, ctx: &Context) -> Result<Seen, Never> {
    Ok(Seen {
        remaining_ms: ctx.remaining().map(|d| d.as_millis()),
    })
}

#[handler]
async fn sleep(cmd: Sleep) -> Result<(), Never> {
    tokio::time::sleep(Duration::from_millis(cmd.ms)).await;
    Ok(())
}

fn app() -> Catga<impl Layer> {
    Catga::builder().build().expect("the application builds")
}

/// A 10 s route timeout.
async fn server() -> Server {
    let routes = Routes::new(app())
        .command::<Inspect>("/inspect")
        .command::<Sleep>("/sleep")
        .timeout(Duration::from_secs(10));
    Server::start(Router::new().merge(routes).fallback(catga_axum::not_found)).await
}

/// The time left before the deadline, as the handler of `Inspect` saw it.
async fn remaining_ms(server: &Server, headers: &[(&str, &str)]) -> Option<u64> {
    let seen = server.post_json("/inspect", "{}", headers).await;
    seen.json(StatusCode::OK)["remaining_ms"].as_u64()
}

#[tokio::test]
async fn request_timeout_sets_the_deadline_capped_by_the_route() {
    let server = server().await;
    let asked = remaining_ms(&server, &[("request-timeout", "2.5")]).await;
    assert!(
        asked.is_some_and(|ms| ms <= 2_500 && ms > 1_000),
        "{asked:?}"
    );
    let capped = remaining_ms(&server, &[("request-timeout", "3600")]).await;
    assert!(
        capped.is_some_and(|ms| ms <= 10_000 && ms > 8_000),
        "{capped:?}"
    );
    let route = remaining_ms(&server, &[]).await;
    assert!(
        route.is_some_and(|ms| ms <= 10_000 && ms > 8_000),
        "{route:?}"
    );
}

#[tokio::test]
async fn a_request_past_its_timeout_header_answers_504() {
    let server = server().await;
    let reply = server
        .post_json("/sleep", r#"{"ms":5000}"#, &[("request-timeout", "0.1")])
        .await;
    let problem = reply.problem(StatusCode::GATEWAY_TIMEOUT, "timeout");
    assert!(
        problem["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("urn:uuid:"))
    );
}

#[tokio::test]
async fn a_request_past_its_routes_timeout_answers_504() {
    let routes = Routes::new(app())
        .command::<Sleep>("/sleep")
        .timeout(Duration::from_millis(100));
    let server = Server::start(routes.into_router()).await;
    let reply = server.post_json("/sleep", r#"{"ms":5000}"#, &[]).await;
    reply.problem(StatusCode::GATEWAY_TIMEOUT, "timeout");
}

#[tokio::test]
async fn a_malformed_request_timeout_is_refused() {
    let server = server().await;
    for bad in ["soon", "0", "-1", "1e3"] {
        let reply = server
            .post_json("/sleep", r#"{"ms":1}"#, &[("request-timeout", bad)])
            .await;
        let problem = reply.problem(StatusCode::BAD_REQUEST, "invalid_header");
        assert_eq!(problem["header"], "request-timeout");
    }
}
