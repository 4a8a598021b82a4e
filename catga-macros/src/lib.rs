//! Procedural macros for catga. Use them through `catga_core` (`catga_core::command` …), which
//! re-exports them; this crate is an implementation detail.
//!
//! Each macro parses everything first, collects every error (each at the smallest wrong span,
//! with a `help` saying what to write instead), and only then generates code. Generated code
//! names everything by absolute path (`::catga_core::…`, or the path given with
//! `crate = "…"`), so it works with a renamed dependency.

mod args;
mod handler;
mod lint;
mod message;
mod static_app;

use proc_macro::TokenStream;

/// Declares a command: a request that changes state, with exactly one handler.
///
/// Arguments: `output = T` (the reply; default `()`), `name = "…"` (stable wire name; default
/// the type name), `local` (never crosses a process, so no `Serialize`/`Deserialize` needed),
/// `timeout = "5s"`, `retry = 3` (per-message behaviour settings), `crate = "path"` (a renamed
/// `catga_core` dependency).
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Command, args.into(), item.into()).into()
}

/// Declares a query: a request that only reads, with exactly one handler. `output = T` is
/// required; other arguments as for `#[command]`.
#[proc_macro_attribute]
pub fn query(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Query, args.into(), item.into()).into()
}

/// Declares an event: a fact with zero or more handlers and no reply. Arguments as for
/// `#[command]` except `output`.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    message::expand(catga_lints::Kind::Event, args.into(), item.into()).into()
}

/// Registers a handler: on an `async fn`, or on an `impl` block whose every method is one.
///
/// Parameters: the message (by value; an event also as `&E`), optionally `&Context`, and `&T`
/// state registered with the builder. Returns `Result<Output, E>` with
/// `E: std::error::Error + Send + Sync + 'static`. Argument: `crate = "path"`.
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
