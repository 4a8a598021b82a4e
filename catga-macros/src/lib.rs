//! Procedural macros for catga. Use them through `catga_core` (`catga_core::command` …), which
//! re-exports them; this crate is an implementation detail.
//!
//! Each macro parses everything first, collects every error (each at the smallest wrong span,
//! with a `help` saying what to write instead), and only then generates code. Generated code
//! names everything by absolute path (`::catga_core::…`, or the path given with
//! `crate = "…"`), so it works with a renamed dependency.

#![forbid(unsafe_code)]

mod args;
mod handler;
mod lint;
mod message;
mod static_app;

use proc_macro::TokenStream;

/// Declares a command: a request that changes state, with exactly one handler.
///
/// Arguments (all optional):
///
/// | argument | meaning |
/// |---|---|
/// | `output = T` | the handler's reply (default `()`) |
/// | `name = "orders.place"` | the stable wire name (default: the type's name) |
/// | `local` | never crosses a process: no `Serialize`/`Deserialize` needed, no wire code generated |
/// | `idempotent` | safe to handle twice: `Retry` may run it again when an attempt is in doubt (docs/behaviours.md) |
/// | `timeout = "5s"` | the `Timeout` behaviour's limit for this message (`ms`, `s`, `m`) |
/// | `retry = 3` | the `Retry` behaviour's attempts for this message (at least 1) |
/// | `rate_limit = "100/s"` | the `RateLimit` behaviour's permits per period (`"5/m"`, `"20/250ms"`) |
/// | `concurrency = 8` | at most this many dispatches of the message in flight at once |
/// | `bulkhead = "payments"` | shares its concurrency limit with the other messages of that group |
/// | `skip(retry, timeout, …)` | behaviours that leave this message alone |
/// | `allow(rule, …)` | silences a catga lint on the message (`cargo catga rules` lists them) |
/// | `crate = "path"` | the path of a renamed `catga_core` dependency |
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Command, args.into(), item.into()).into()
}

/// Declares a query: a request that only reads, with exactly one handler.
///
/// Arguments: `output = T` (required: the reply), and as for [`macro@command`] `name`, `local`,
/// `timeout`, `retry`, `rate_limit`, `concurrency`, `bulkhead`, `skip(…)`, `allow(…)`,
/// `crate` (`idempotent` is implied: a query changes nothing). Only queries take:
///
/// | argument | meaning |
/// |---|---|
/// | `cache_ttl = "30s"` | the `Caching` behaviour keeps each reply this long (keyed by `CacheKey`) |
/// | `invalidated_by(OrderPlaced, …)` | events that clear the cached replies when published |
#[proc_macro_attribute]
pub fn query(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Query, args.into(), item.into()).into()
}

/// Declares an event: a fact with zero or more handlers and no reply.
///
/// Arguments: as for [`macro@command`] except `output` and `idempotent`: `name`, `local`,
/// `timeout`, `retry`, `rate_limit`, `concurrency`, `bulkhead`, `skip(…)`, `allow(…)`, `crate`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Event, args.into(), item.into()).into()
}

/// Registers a handler: on an `async fn`, or on an `impl` block whose every method is one.
///
/// Parameters: the message (by value; an event also as `&E`), optionally `&Context`, and `&T`
/// state registered with the builder. Returns `Result<Output, E>` where `E` is a
/// `std::error::Error + Send + Sync + 'static`, `anyhow::Error`, `eyre::Report`,
/// `Box<dyn Error + Send + Sync>` or `String`.
///
/// Arguments (optional): `allow(rule, …)` silences a catga lint on the handler (e.g.
/// `allow(unwrap_in_handler)`; `cargo catga rules` lists them), `crate = "path"` names a
/// renamed `catga_core` dependency.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::expand(args.into(), item.into()).into()
}

/// Generates a fully static application type from a list of messages and their handlers.
///
/// ```text
/// static_app! {
///     pub struct Shop {
///         PlaceOrder => Orders,                 // a request and its handler
///         OrderPlaced => [send_receipt, audit], // an event and its handlers
///     }
/// }
/// ```
#[proc_macro]
pub fn static_app(input: TokenStream) -> TokenStream {
    static_app::expand(input.into()).into()
}
