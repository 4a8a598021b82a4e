//! `/livez`, `/readyz` and `/metrics` over real HTTP.

mod common;

use axum::Router;
use axum::http::StatusCode;
use catga_axum::Routes;
use catga_core::health::{CheckStatus, Flag};
use catga_core::prelude::*;
use common::Server;

fn app() -> Catga {
    Catga::builder().build().expect("the application builds")
}

#[tokio::test]
async fn livez_answers_200_while_the_process_serves() {
    let app = app();
    app.add_health_check("database", || CheckStatus::down("unreachable"));
    let server = Server::start(Routes::new(app).health().into_router()).await;
    let reply = server.get("/livez").await;
    assert_eq!(
        reply.json(StatusCode::OK),
        serde_json::json!({"live": true})
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn readyz_answers_200_with_the_report_when_ready() {
    let app = app();
    app.add_health_check("cache", || CheckStatus::Up);
    let server = Server::start(Routes::new(app).health().into_router()).await;
    let reply = server.get("/readyz").await;
    assert_eq!(
        reply.json(StatusCode::OK),
        serde_json::json!({
            "live": true,
            "ready": true,
            "checks": [{"name": "cache", "status": "up"}],
        })
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn readyz_answers_503_naming_the_failing_check() {
    let app = app();
    let consumers = Flag::new("consumers stopped");
    app.add_health_check("cache", || CheckStatus::Up);
    app.add_health_check("consumers", consumers.clone());
    let server = Server::start(Routes::new(app).health().into_router()).await;

    let reply = server.get("/readyz").await;
    assert_eq!(
        reply.json(StatusCode::SERVICE_UNAVAILABLE),
        serde_json::json!({
            "live": true,
            "ready": false,
            "checks": [
                {"name": "cache", "status": "up"},
                {"name": "consumers", "status": "down", "reason": "consumers stopped"},
            ],
        })
    );

    consumers.set_up();
    let ready = server.get("/readyz").await;
    assert_eq!(
        ready.json(StatusCode::OK)["ready"],
        true,
        "read per probe, not cached"
    );
}

#[tokio::test]
async fn metrics_serves_what_the_render_function_returns() {
    let routes = Routes::new(app())
        .metrics(|| "# TYPE catga_messages_total counter\ncatga_messages_total 3\n".to_string());
    let server = Server::start(Router::new().merge(routes)).await;
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.content_type(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        reply.text().contains("catga_messages_total 3"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn routes_nest_under_a_prefix_with_the_users_own() {
    let routes = Routes::new(app()).health();
    let router = Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .nest("/ops", routes.into_router())
        .fallback(catga_axum::not_found);
    let server = Server::start(router).await;
    assert_eq!(server.get("/").await.text(), "home");
    let live = server.get("/ops/livez").await;
    assert_eq!(live.json(StatusCode::OK)["live"], true);
    server
        .get("/livez")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
}
