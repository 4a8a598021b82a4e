//! Handlers: the code that runs for a message.
//!
//! Write handlers with [`#[handler]`](macro@crate::handler) on an `async fn` or on an `impl` block;
//! the attribute implements [`RequestHandler`] or [`EventHandler`] and registers the handler so
//! `build()` finds it. The traits are public so the static application path
//! ([`static_app!`](crate::static_app!)) can name handlers; you never implement them by hand.
//!
//! A handler's parameters are the message (by value; an event also by `&E`), optionally
//! `&Context`, and `&T` references to state registered with the builder. It returns
//! `Result<Output, E>` for any `E: std::error::Error + Send + Sync + 'static`, or one of the
//! error types services write: `anyhow::Result<Output>`, `eyre::Result<Output>`,
//! `Result<Output, Box<dyn Error + Send + Sync>>`, `Result<Output, String>`. The error a wrapper
//! holds stays reachable with [`Error::downcast_ref`](crate::Error::downcast_ref), also under
//! added context; a catga [`Error`] propagated through one with `?` keeps its
//! retryability.

use std::future::Future;

use crate::context::Context;
use crate::error::Error;
use crate::message::{Event, Location, Message, Request};
use crate::state::States;

/// Where a handler is and what it is called, for startup errors and spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerMeta {
    /// The handler's path, e.g. `shop::Orders::place`.
    pub name: &'static str,
    /// Where it is declared.
    pub location: Location,
}

impl HandlerMeta {
    /// Whether the handler is declared in `module` or a module inside it, `module` being a
    /// path from the crate root without the crate's name: `"shipping"` or
    /// `"shipping::returns"`. Handler names start with the crate's name
    /// (`shop::shipping::ship`), so this is the filter to give
    /// [`CatgaBuilder::handlers`](crate::CatgaBuilder::handlers):
    /// `.handlers(|h| h.is_in("shipping"))`.
    ///
    /// ```
    /// # use catga_core::HandlerMeta;
    /// # fn meta(name: &'static str) -> HandlerMeta {
    /// #     HandlerMeta { name, location: catga_core::message::Location { file: "", line: 0 } }
    /// # }
    /// assert!(meta("shop::shipping::ship").is_in("shipping"));
    /// assert!(meta("shop::shipping::returns::Returns::take").is_in("shipping"));
    /// assert!(meta("shop::shipping::returns::Returns::take").is_in("shipping::returns"));
    /// assert!(!meta("shop::shipping_rates::quote").is_in("shipping"));
    /// assert!(!meta("shop::billing::charge").is_in("shipping"));
    /// ```
    pub fn is_in(&self, module: &str) -> bool {
        let module = module.trim_matches(':');
        // Skip the crate's name: the first segment.
        let Some((_, path)) = self.name.split_once("::") else {
            return false;
        };
        path.strip_prefix(module)
            .is_some_and(|rest| rest.starts_with("::"))
    }
}

/// The state types a handler needs but nobody registered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MissingState(pub Vec<&'static str>);

/// A handler of the request `M`. Implemented by `#[handler]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{M}`",
    label = "no `#[handler]` for `{M}` here",
    note = "write an `async fn` taking `{M}` and annotate it (or its `impl` block) with `#[handler]`"
)]
pub trait RequestHandler<M: Request>: 'static {
    /// What the handler borrows, resolved once at build time.
    type State: Send + Sync + 'static;
    /// Name and location.
    const META: HandlerMeta;
    /// Looks the handler's state up.
    fn resolve(states: &States) -> Result<Self::State, MissingState>;
    /// Runs the handler.
    fn call<'a>(
        state: &'a Self::State,
        msg: M,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send + 'a;
}

/// A handler of the event `E`. Implemented by `#[handler]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not handle `{E}`",
    label = "no `#[handler]` for `{E}` here",
    note = "write an `async fn` taking `{E}` or `&{E}` and annotate it with `#[handler]`"
)]
// Bounded by `Message`, not `Event`: a handler that borrows a command is reported once, by
// `assert_by_ref`, and its impl still type-checks instead of repeating the mistake.
pub trait EventHandler<E: Message>: 'static {
    /// What the handler borrows, resolved once at build time.
    type State: Send + Sync + 'static;
    /// Name and location.
    const META: HandlerMeta;
    /// Looks the handler's state up.
    fn resolve(states: &States) -> Result<Self::State, MissingState>;
    /// Runs the handler.
    fn call<'a>(
        state: &'a Self::State,
        event: &'a E,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;
}

/// A handler that takes its message by value, whatever the message's kind. Implemented by
/// `#[handler]`; catga turns it into a [`RequestHandler`] or an [`EventHandler`] according to
/// the message's trait (an event is cloned for a by-value handler).
#[doc(hidden)]
pub trait OwnedHandler<M: Message>: 'static {
    type State: Send + Sync + 'static;
    const META: HandlerMeta;
    fn resolve(states: &States) -> Result<Self::State, MissingState>;
    fn call<'a>(
        state: &'a Self::State,
        msg: M,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send + 'a;
}

impl<M: Request, H: OwnedHandler<M>> RequestHandler<M> for H {
    type State = H::State;
    const META: HandlerMeta = H::META;
    #[inline]
    fn resolve(states: &States) -> Result<Self::State, MissingState> {
        H::resolve(states)
    }
    #[inline]
    fn call<'a>(
        state: &'a Self::State,
        msg: M,
        ctx: &'a Context,
    ) -> impl Future<Output = Result<M::Output, Error>> + Send + 'a {
        H::call(state, msg, ctx)
    }
}

impl<E: Event, H: OwnedHandler<E>> EventHandler<E> for H {
    type State = H::State;
    const META: HandlerMeta = H::META;
    fn resolve(states: &States) -> Result<Self::State, MissingState> {
        H::resolve(states)
    }
    async fn call<'a>(state: &'a Self::State, event: &'a E, ctx: &'a Context) -> Result<(), Error> {
        // `#[handler]` checked at compile time that a by-value event is `Clone`.
        match event.__try_clone() {
            Some(owned) => H::call(state, owned, ctx).await,
            None => Err(crate::ErrorKind::Internal {
                message: E::NAME,
                what: "a by-value handler of an event that is not `Clone`",
            }
            .into()),
        }
    }
}

/// A message kind as a type, so compile-time checks can depend on it.
#[doc(hidden)]
pub trait Role: 'static {}
/// The role of commands and queries.
#[doc(hidden)]
pub enum RequestRole {}
/// The role of events.
#[doc(hidden)]
pub enum EventRole {}
impl Role for RequestRole {}
impl Role for EventRole {}
