//! The handlers behind a command or query route: request in, message out, reply back.
//!
//! Each request is read in a fixed order, so a client gets the first thing wrong with it:
//! a body declared over the limit is refused before anything else (the route's middleware,
//! `edge`), the headers become the [`Context`] ([`ContextRules`]), the body (or, for a query
//! sent with `GET`, the query string) becomes the message (its media type checked before it
//! is read, its emptiness before it is parsed), the message is sent with
//! [`Catga::send_with`], and its reply or error becomes the response ([`Reply`],
//! [`ErrorMap`]). A handler that panics answers 500 (`code: panic`), like any failure.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use catga_core::{Catga, Context, Error, ErrorKind, Layer};
use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::ContextRules;
use crate::error_map::ErrorMap;
use crate::problem::Problem;
use crate::reply::Reply;

/// What every route of one [`Routes`](crate::Routes) shares: the application and how to map
/// requests and errors.
pub(crate) struct Shared<L> {
    pub(crate) app: Catga<L>,
    pub(crate) rules: ContextRules,
    pub(crate) errors: ErrorMap,
}

/// The state of a [`Routes`](crate::Routes)' router.
pub(crate) type SharedState<L> = State<Arc<Shared<L>>>;

/// A request whose message is the JSON body.
pub(crate) async fn json_body<M, L>(State(shared): SharedState<L>, request: Request) -> Response
where
    M: catga_core::Request + DeserializeOwned,
    M::Output: Serialize,
    L: Layer,
{
    let ctx = match shared.rules.context(request.headers()) {
        Ok(ctx) => ctx,
        Err(error) => return Problem::from(error).into_response(),
    };
    match json_message::<M>(request).await {
        Ok(msg) => dispatch(&shared, msg, ctx).await,
        Err(problem) => problem.into_response(),
    }
}

/// The message in a JSON body: 415 without a JSON media type (the body unread), 413 over the
/// limit, 400 `invalid_json` for an empty body or one that is not JSON, 400 `invalid_body`
/// for JSON that is not the message.
async fn json_message<M: DeserializeOwned>(request: Request) -> Result<M, Problem> {
    if !is_json(request.headers()) {
        return Err(crate::rejection::unsupported_media_type());
    }
    // Read within the route's `DefaultBodyLimit`: 413 at the first byte over it.
    let body = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| Problem::from(JsonRejection::from(rejection)))?;
    if body.is_empty() {
        return Err(crate::rejection::empty_body());
    }
    let Json(msg) = Json::<M>::from_bytes(&body)?;
    Ok(msg)
}

/// Whether the request says its body is JSON, as axum's `Json` decides: `application/json`
/// or `application/<anything>+json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let subtype = subtype.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (subtype == "json" || subtype.ends_with("+json"))
}

/// A query whose message is the query string (`GET /orders?id=7`).
pub(crate) async fn query_string<M, L>(
    State(shared): SharedState<L>,
    headers: HeaderMap,
    query: Result<Query<M>, QueryRejection>,
) -> Response
where
    M: catga_core::Request + DeserializeOwned,
    M::Output: Serialize,
    L: Layer,
{
    let ctx = match shared.rules.context(&headers) {
        Ok(ctx) => ctx,
        Err(error) => return Problem::from(error).into_response(),
    };
    match query {
        Ok(Query(msg)) => dispatch(&shared, msg, ctx).await,
        Err(rejection) => Problem::from(rejection).into_response(),
    }
}

async fn dispatch<M, L>(shared: &Shared<L>, msg: M, ctx: Context) -> Response
where
    M: catga_core::Request,
    M::Output: Serialize,
    L: Layer,
{
    // Read before the context moves into the dispatch: a failure's problem and log line
    // name the message id (the one the `Idempotency-Key` gave, if any).
    let message_id = ctx.message_id();
    // A direct `send` lets a handler's panic through to its caller (catga contains panics
    // only where it is the caller: transports, follow-up events). Here the caller is a
    // client: it gets a 500 like any failure, and the connection stays up. Nothing of the
    // dispatch is used after a panic but the payload, hence `AssertUnwindSafe`.
    let dispatched = AssertUnwindSafe(shared.app.send_with(msg, ctx))
        .catch_unwind()
        .await;
    let error = match dispatched {
        Ok(Ok(output)) => return Reply(output).into_response(),
        Ok(Err(error)) => error,
        Err(payload) => Error::from(ErrorKind::Panicked {
            message: M::NAME.to_string(),
            detail: panic_text(payload.as_ref()),
        }),
    };
    shared
        .errors
        .problem_for(&error, message_id)
        .into_response()
}

/// A panic's message, when it was a string.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    match (
        payload.downcast_ref::<&str>(),
        payload.downcast_ref::<String>(),
    ) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic with a non-string payload".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_type(content_type: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers
    }

    #[test]
    fn json_media_types_are_those_axum_accepts() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=utf-8",
            "Application/JSON",
            "application/cloudevents+json",
        ] {
            assert!(is_json(&with_type(json)), "{json}");
        }
        for other in ["text/json", "text/plain", "application/xml", "json", ""] {
            assert!(!is_json(&with_type(other)), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
