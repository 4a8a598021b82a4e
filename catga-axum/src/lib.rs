//! # catga-axum
//!
//! The HTTP edge of a catga application, for [axum](https://docs.rs/axum) 0.8: commands and
//! queries as JSON endpoints, errors as RFC 9457 `application/problem+json`, and the
//! `/livez`, `/readyz` and `/metrics` routes an orchestrator and a scraper call.
//!
//! ```rust,standalone_crate
//! use std::time::Duration;
//!
//! use axum::Router;
//! use axum::http::StatusCode;
//! use catga_axum::Routes;
//! use catga_core::prelude::*;
//!
//! #[command(output = u64)]
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct PlaceOrder { pub customer: u64, pub quantity: u32 }
//!
//! #[query(output = Option<u32>)]
//! #[derive(Debug, Serialize, Deserialize)]
//! pub struct GetQuantity { pub id: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("out of stock")]
//! pub struct OutOfStock;
//!
//! impl ErrorCode for OutOfStock {
//!     fn code(&self) -> &'static str { "orders.out_of_stock" }
//! }
//!
//! #[handler]
//! async fn place(cmd: PlaceOrder) -> Result<u64, OutOfStock> {
//!     if cmd.quantity > 10 { Err(OutOfStock) } else { Ok(7) }
//! }
//!
//! #[handler]
//! async fn quantity(query: GetQuantity) -> Result<Option<u32>, OutOfStock> {
//!     Ok((query.id == 7).then_some(2))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Catga::builder()
//!         .layer(Idempotency::default())    // a retried `Idempotency-Key` gets the first reply
//!         .layer(Validation)                // 422 with every invalid field
//!         .build()?;
//!
//!     let api = Routes::new(app)
//!         .command::<PlaceOrder>("/orders")            // POST, JSON in, JSON out
//!         .query::<GetQuantity>("/orders/quantity")    // GET ?id=7, or POST JSON
//!         .timeout(Duration::from_secs(10))            // the deadline, and `Request-Timeout`'s cap
//!         .map_code("orders.out_of_stock", StatusCode::CONFLICT)
//!         .health();                                   // GET /livez, GET /readyz
//!
//!     let router = Router::new()
//!         .nest("/api", api.into_router())
//!         .fallback(catga_axum::not_found);            // 404s as problem+json too
//!
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     # if false {
//!     axum::serve(listener, router).await?;
//!     # }
//!     Ok(())
//! }
//! ```
//!
//! The pieces, each usable on its own in handlers of your own:
//!
//! * [`Routes`] turns message types into routes of an axum [`Router`](axum::Router).
//! * [`ContextRules`] and the [`MessageContext`] extractor map `Idempotency-Key`,
//!   `traceparent`/`tracestate`, `Request-Timeout` and an allow-list of headers onto the
//!   message's [`Context`](catga_core::Context) ([`context`]).
//! * [`Problem`] is an RFC 9457 problem; [`ErrorMap`] maps a catga
//!   [`Error`](catga_core::Error) to one ([`error_map`] has the table), and `?` does it with
//!   the default table. Refused bodies, unknown routes and methods are problems too
//!   ([`rejection`]).
//! * [`Reply`] answers a reply as JSON, or 204 No Content for `()`.
//! * Each command and query route records OpenTelemetry's HTTP server duration,
//!   [`HTTP_SERVER_REQUEST_DURATION`], through the `metrics` facade ([`metrics`]), and
//!   refuses a body whose `Content-Length` is over its limit before reading any of it.
//!
//! The guide, `docs/http.md` in the repository, shows the whole of it on one page.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod context;
mod edge;
mod endpoint;
pub mod error_map;
pub mod health;
pub mod metrics;
pub mod problem;
pub mod rejection;
pub mod reply;
pub mod routes;

pub use context::{
    ContextRules, HeaderError, IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY_BYTES, MAX_TIMEOUT,
    MessageContext, REQUEST_TIMEOUT, TRACEPARENT, TRACESTATE, message_id_for_key,
};
pub use error_map::{DEFAULT_RETRY_AFTER, ErrorMap};
pub use metrics::{HTTP_SERVER_REQUEST_DURATION, PROMETHEUS_TEXT};
pub use problem::{PROBLEM_JSON, Problem};
pub use rejection::{method_not_allowed, not_found};
pub use reply::Reply;
pub use routes::Routes;

// The guide's code blocks compile as doctests of this crate, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../docs/http.md")]
mod guide_doctests {}
