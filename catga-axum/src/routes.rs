//! [`Routes`]: a group of HTTP routes onto one application, with one set of rules.
//!
//! Each command is a `POST` of its JSON; each query a `POST` of its JSON or a `GET` with its
//! fields in the query string; `/livez`, `/readyz` and `/metrics` are there if asked for.
//! The group's settings (timeout, forwarded headers, body limit, status of domain codes)
//! apply to all its routes, whatever the order of the calls. Routes that need other settings
//! go in another group, merged into the same [`Router`]:
//!
//! ```rust,standalone_crate
//! # use std::time::Duration;
//! # use axum::Router;
//! # use catga_axum::Routes;
//! # use catga_core::prelude::*;
//! # #[command(output = u64)] #[derive(Debug, Serialize, Deserialize)] pub struct PlaceOrder { pub n: u64 }
//! # #[command] #[derive(Debug, Serialize, Deserialize)] pub struct Export { pub n: u64 }
//! # #[derive(Debug, thiserror::Error)] #[error("x")] pub struct X;
//! # #[handler] async fn place(c: PlaceOrder) -> Result<u64, X> { Ok(c.n) }
//! # #[handler] async fn export(_: Export) -> Result<(), X> { Ok(()) }
//! # fn main() -> Result<(), catga_core::BuildError> {
//! # let app = Catga::builder().build()?;
//! let fast = Routes::new(app.clone()).timeout(Duration::from_secs(2)).command::<PlaceOrder>("/orders");
//! let slow = Routes::new(app).timeout(Duration::from_secs(60)).command::<Export>("/exports");
//! let router: Router = Router::new().merge(fast).merge(slow);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::http::header::HeaderName;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use catga_core::{Catga, Command, Identity, Layer, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::ContextRules;
use crate::edge::edge;
use crate::endpoint::{self, Shared};
use crate::error_map::ErrorMap;
use crate::metrics::{self, HTTP_SERVER_REQUEST_DURATION, Render};
use crate::rejection::method_not_allowed;

/// A group of routes onto one application; see the [module docs](self) and the
/// [crate example](crate).
///
/// Build it with the routes and settings it needs, then turn it into an axum [`Router`]
/// with [`into_router`](Self::into_router) (or pass it to `Router::merge`, which takes it
/// as it is): nest it, merge it, add your own layers to it as to any router.
#[must_use = "routes do nothing until they are turned into a `Router`"]
pub struct Routes<L = Identity> {
    app: Catga<L>,
    /// The command and query routes: measured, and their bodies checked by `Content-Length`.
    router: Router<Arc<Shared<L>>>,
    /// `/livez`, `/readyz`, `/metrics`: polled on a schedule, not measured.
    probes: Router<Arc<Shared<L>>>,
    rules: ContextRules,
    errors: ErrorMap,
    body_limit: usize,
}

impl<L> std::fmt::Debug for Routes<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("app", &self.app)
            .field("rules", &self.rules)
            .field("errors", &self.errors)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

impl<L: Layer> Routes<L> {
    /// No routes yet, onto `app`: no deadline but what requests ask for, nothing forwarded,
    /// a body limit of the application's own
    /// [`max_payload_bytes`](catga_core::Catga::max_payload_bytes) (1 MiB,
    /// [`DEFAULT_MAX_PAYLOAD_BYTES`](catga_core::mediator::DEFAULT_MAX_PAYLOAD_BYTES), unless its builder set another), no domain code mapped.
    pub fn new(app: Catga<L>) -> Self {
        let body_limit = app.max_payload_bytes();
        Routes {
            app,
            router: Router::new(),
            probes: Router::new(),
            rules: ContextRules::new(),
            errors: ErrorMap::new(),
            body_limit,
        }
    }

    /// `POST path` with the command `M` as JSON: answers the reply as JSON with 200, or 204
    /// No Content for a command without output.
    ///
    /// # Panics
    /// As [`Router::route`] does: if `path` is not a valid route path, or the group already
    /// has a `POST` route at `path`.
    #[track_caller]
    pub fn command<M>(mut self, path: &str) -> Self
    where
        M: Command + DeserializeOwned,
        M::Output: Serialize,
    {
        self.router = self.router.route(path, post(endpoint::json_body::<M, L>));
        self
    }

    /// `GET path?field=value` or `POST path` with the query `M` as JSON: answers the reply as
    /// JSON with 200.
    ///
    /// The query string is read with `serde_urlencoded`: it suits queries of flat fields
    /// (strings, numbers, booleans, options of those); one with nested structs or lists is
    /// sent with `POST`.
    ///
    /// # Panics
    /// As [`Router::route`] does: if `path` is not a valid route path, or the group already
    /// has a `GET` or `POST` route at `path`.
    #[track_caller]
    pub fn query<M>(mut self, path: &str) -> Self
    where
        M: Query + DeserializeOwned,
        M::Output: Serialize,
    {
        let route = get(endpoint::query_string::<M, L>).post(endpoint::json_body::<M, L>);
        self.router = self.router.route(path, route);
        self
    }

    /// `GET /livez` and `GET /readyz` (see the [`health` module](crate::health)): liveness without any
    /// check, readiness from [`Catga::health`], 200 or 503 with the report as JSON.
    ///
    /// # Panics
    /// If the group already has these routes.
    #[track_caller]
    pub fn health(mut self) -> Self {
        self.probes = self
            .probes
            .route("/livez", get(crate::health::livez))
            .route(
                "/readyz",
                get(|State(shared): endpoint::SharedState<L>| async move {
                    crate::health::readyz(&shared.app.health())
                }),
            );
        self
    }

    /// `GET /metrics`: what `render` returns, as `text/plain; version=0.0.4; charset=utf-8`
    /// (the Prometheus text format), such as
    /// `move || prometheus_handle.render()` (see the [`metrics` module](crate::metrics)).
    ///
    /// # Panics
    /// If the group already has this route.
    #[track_caller]
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        let render: Render = Arc::new(render);
        self.probes = self.probes.route(
            "/metrics",
            get(move || {
                let render = Arc::clone(&render);
                async move { metrics::metrics(&render) }
            }),
        );
        self
    }

    /// The longest a dispatch from these routes may run: the deadline of a request without
    /// `Request-Timeout`, and the cap on one with it (see [`ContextRules::timeout`]). A
    /// dispatch past it fails with 504.
    pub fn timeout(mut self, max: Duration) -> Self {
        self.rules = self.rules.timeout(max);
        self
    }

    /// Copies the request header `name` into each message's context (see
    /// [`ContextRules::forward_header`]).
    ///
    /// # Panics
    /// If `name` starts with `catga-` (catga's reserved namespace).
    #[track_caller]
    pub fn forward_header(mut self, name: HeaderName) -> Self {
        self.rules = self.rules.forward_header(name);
        self
    }

    /// The largest request body accepted, in bytes; a larger one is refused with 413: at
    /// once, before any of it is read, when its `Content-Length` says so, else (a chunked
    /// body) as soon as it passes the limit, before it is read whole. [`DEFAULT_MAX_PAYLOAD_BYTES`](catga_core::mediator::DEFAULT_MAX_PAYLOAD_BYTES) (1 MiB) unless set.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Answers errors with the code `code` (a handler error's
    /// [`ErrorCode`](catga_core::ErrorCode)) with `status` (see [`ErrorMap::map_code`]).
    /// Unmapped, a domain code is a 500.
    pub fn map_code(
        mut self,
        code: impl Into<std::borrow::Cow<'static, str>>,
        status: StatusCode,
    ) -> Self {
        self.errors = self.errors.map_code(code, status);
        self
    }

    /// Replaces how headers become contexts: every setting [`timeout`](Self::timeout) and
    /// [`forward_header`](Self::forward_header) made so far included.
    pub fn context_rules(mut self, rules: ContextRules) -> Self {
        self.rules = rules;
        self
    }

    /// Replaces how errors become problems: every [`map_code`](Self::map_code) so far
    /// included.
    pub fn error_map(mut self, errors: ErrorMap) -> Self {
        self.errors = errors;
        self
    }

    /// The routes as an axum router, for any state `S` of the router it joins.
    ///
    /// Each command and query route records
    /// [`http_server_request_duration_seconds`](crate::metrics::HTTP_SERVER_REQUEST_DURATION)
    /// through the `metrics` facade (described here to the recorder installed at the time).
    pub fn into_router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
        let shared = Arc::new(Shared {
            app: self.app,
            rules: self.rules,
            errors: self.errors,
        });
        let mut api = self.router.method_not_allowed_fallback(method_not_allowed);
        // A route layer runs on a matched path only (405s included), where the route's
        // template is known; axum refuses one on a router without routes.
        if api.has_routes() {
            ::metrics::describe_histogram!(
                HTTP_SERVER_REQUEST_DURATION,
                ::metrics::Unit::Seconds,
                "Duration of HTTP server requests"
            );
            api = api.route_layer(from_fn_with_state(self.body_limit, edge));
        }
        let probes = self.probes.method_not_allowed_fallback(method_not_allowed);
        api.merge(probes)
            .layer(DefaultBodyLimit::max(self.body_limit))
            .with_state(shared)
    }
}

impl<L: Layer, S: Clone + Send + Sync + 'static> From<Routes<L>> for Router<S> {
    fn from(routes: Routes<L>) -> Self {
        routes.into_router()
    }
}
