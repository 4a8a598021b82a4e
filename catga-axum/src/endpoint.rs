//! The handlers behind a command or query route: request in, message out, reply back.
//!
//! Each request is read in a fixed order, so a client gets the first thing wrong with it:
//! the headers become the [`Context`] ([`ContextRules`]), the body (or, for a query sent with
//! `GET`, the query string) becomes the message, the message is sent with
//! [`Catga::send_with`], and its reply or error becomes the response ([`Reply`],
//! [`ErrorMap`]). A handler that panics answers 500 (`code: panic`), like any failure.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use catga_core::{Catga, Context, Error, ErrorKind, Layer, Request};
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
pub(crate) async fn json_body<M, L>(
    State(shared): SharedState<L>,
    headers: HeaderMap,
    body: Result<Json<M>, JsonRejection>,
) -> Response
where
    M: Request + DeserializeOwned,
    M::Output: Serialize,
    L: Layer,
{
    let ctx = match shared.rules.context(&headers) {
        Ok(ctx) => ctx,
        Err(error) => return Problem::from(error).into_response(),
    };
    match body {
        Ok(Json(msg)) => dispatch(&shared, msg, ctx).await,
        Err(rejection) => Problem::from(rejection).into_response(),
    }
}

/// A query whose message is the query string (`GET /orders?id=7`).
pub(crate) async fn query_string<M, L>(
    State(shared): SharedState<L>,
    headers: HeaderMap,
    query: Result<Query<M>, QueryRejection>,
) -> Response
where
    M: Request + DeserializeOwned,
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
    M: Request,
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
