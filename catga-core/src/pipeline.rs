//! The behaviour pipeline: middleware around every dispatch, composed by type.
//!
//! A [`Behavior`] wraps the rest of the pipeline: it receives the message, the context and
//! [`Next`], and decides whether, when and how often to call `next.run(msg)`. The application
//! type carries its stack as a type (`Stack<Timeout, Stack<Retry, Identity>>`), like
//! `tower::ServiceBuilder`, so the compiler inlines it and an empty stack costs nothing.
//!
//! Layers run in the order they were added: the first `.layer(…)` is the outermost.
//!
//! ```
//! use catga_core::{Behavior, Context, Error, Next, Payload};
//!
//! /// Counts dispatches.
//! #[derive(Default)]
//! struct Count(std::sync::atomic::AtomicU64);
//!
//! impl Behavior for Count {
//!     async fn handle<P: Payload, N: Next<P>>(
//!         &self,
//!         msg: P,
//!         _ctx: &Context,
//!         next: N,
//!     ) -> Result<P::Output, Error> {
//!         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         next.run(msg).await
//!     }
//! }
//! ```

use std::future::Future;

use crate::context::Context;
use crate::error::Error;
use crate::message::AnyMessage;
use crate::payload::Payload;

/// Middleware around a dispatch. See the [module docs](self).
pub trait Behavior: Send + Sync + 'static {
    /// Handles `msg`, usually by calling `next.run(msg)` once or more.
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send;

    /// Sees every event published through the application, once per publish and before its
    /// handlers run, even when it has no handler (`handle` runs once per handler, so an event
    /// nobody handles never reaches it). Caching invalidates on it. Does nothing by default.
    #[inline]
    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context) {
        let _ = (event, ctx);
    }

    /// The events (wire names) this behaviour must see on **every instance** of the
    /// application, not on the one instance of its service a transport delivers an event to:
    /// the transport reports each to [`observe_remote`](Behavior::observe_remote) on every
    /// instance, whether or not the service handles it. Caching lists the events that
    /// invalidate its replies. None by default.
    fn observed_events(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Whether this behaviour keeps failures in a dead-letter store and records that in the
    /// dispatch's context (the built-in `DeadLetter` does), so whoever keeps the rest can tell
    /// which it kept. catga-internal.
    #[doc(hidden)]
    fn keeps_failures(&self) -> bool {
        false
    }

    /// An event named `name` (one [`observed_events`](Behavior::observed_events) lists) was
    /// published somewhere, or may have been while this instance could not see (a transport
    /// reports every observed name after reconnecting). Does nothing by default.
    #[inline]
    fn observe_remote(&self, name: &str) {
        let _ = name;
    }
}

/// A shared behaviour is a behaviour: layer an `Arc` and keep a clone to reach the same
/// instance from outside the application (invalidate a [`Caching`](crate::behavior::Caching)
/// right after a command, read a circuit breaker's state). Every method is passed through,
/// the observing ones included, which a wrapper written by hand easily forgets.
///
/// ```
/// use std::sync::Arc;
/// use catga_core::prelude::*;
/// use catga_core::behavior::Caching;
///
/// #[query(output = u64, cache_ttl = "30s")]
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// pub struct GetStock { pub sku: u64 }
///
/// #[handler]
/// async fn stock(q: GetStock) -> Result<u64, std::io::Error> { Ok(q.sku) }
///
/// let caching = Arc::new(Caching::new());
/// let app = Catga::builder().layer(Arc::clone(&caching)).build()?;
/// // … later, outside any dispatch (right after a command, say):
/// caching.invalidate::<GetStock>();
/// # let _ = app;
/// # Ok::<(), catga_core::BuildError>(())
/// ```
impl<B: Behavior> Behavior for std::sync::Arc<B> {
    #[inline]
    fn handle<P: Payload, N: Next<P>>(
        &self,
        msg: P,
        ctx: &Context,
        next: N,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send {
        (**self).handle(msg, ctx, next)
    }

    #[inline]
    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context) {
        (**self).observe_publish(event, ctx);
    }

    fn observed_events(&self) -> Vec<&'static str> {
        (**self).observed_events()
    }

    fn keeps_failures(&self) -> bool {
        (**self).keeps_failures()
    }

    #[inline]
    fn observe_remote(&self, name: &str) {
        (**self).observe_remote(name);
    }
}

/// The rest of the pipeline after a behaviour: the inner behaviours, then the handler.
///
/// `Next` is a `Copy` handle: call `next.run(msg)` as often as needed (a retry runs it once per
/// attempt). Because `run` takes `self`, a behaviour that only passes the message on can return
/// `next.run(msg)` without an `async` block of its own, and then costs nothing:
///
/// ```
/// use std::future::Future;
/// use catga_core::{Behavior, Context, Error, Next, Payload};
///
/// struct PassThrough;
///
/// impl Behavior for PassThrough {
///     fn handle<P: Payload, N: Next<P>>(
///         &self,
///         msg: P,
///         _ctx: &Context,
///         next: N,
///     ) -> impl Future<Output = Result<P::Output, Error>> + Send {
///         next.run(msg)
///     }
/// }
/// ```
pub trait Next<P: Payload>: Copy + Send + Sync {
    /// Runs the rest of the pipeline with `msg`.
    fn run(self, msg: P) -> impl Future<Output = Result<P::Output, Error>> + Send;

    /// Whether the rest of the pipeline hands the message to a transport (a request with no
    /// handler in this process, sent to the service that handles it) instead of running a
    /// handler here.
    ///
    /// A behaviour whose state belongs with the effect (an idempotency claim, an inbox
    /// record, a transaction around the handler's writes) passes such a message through: the
    /// serving side runs it around the handler, and a claim taken here under the same key
    /// would keep the serving side waiting for a caller that waits for it.
    fn goes_remote(self) -> bool {
        false
    }
}

/// What a pipeline ends in: the handler call. Implemented by catga's dispatch paths.
#[doc(hidden)]
pub trait Terminal<P: Payload>: Sync {
    fn call(&self, msg: P, ctx: &Context) -> impl Future<Output = Result<P::Output, Error>> + Send;

    /// Whether the call hands the message to a transport ([`Next::goes_remote`]).
    fn goes_remote(&self) -> bool {
        false
    }
}

/// A whole behaviour stack. Built by `.layer(…)`; you do not implement it.
///
/// Not tower's `Layer`: tower's wraps one service in one middleware and is implemented by
/// each middleware; catga's is the finished stack of every [`Behavior`] added with
/// `.layer(…)` (tower's `ServiceBuilder` output plays that part), and a behaviour implements
/// [`Behavior`], never this. Name it only as a bound, e.g. `Catga<L: Layer>`.
pub trait Layer: sealed::Sealed + Send + Sync + 'static {
    /// Runs `msg` through every behaviour of the stack and then `terminal`.
    #[doc(hidden)]
    fn run<P: Payload, T: Terminal<P>>(
        &self,
        msg: P,
        ctx: &Context,
        terminal: &T,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send;

    /// Shows a published event to every behaviour ([`Behavior::observe_publish`]).
    #[doc(hidden)]
    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context);

    /// Collects every behaviour's [`Behavior::observed_events`].
    #[doc(hidden)]
    fn observed_events(&self, into: &mut Vec<&'static str>);

    /// Shows a remotely published event name to every behaviour ([`Behavior::observe_remote`]).
    #[doc(hidden)]
    fn observe_remote(&self, name: &str);

    /// Whether any behaviour keeps failures ([`Behavior::keeps_failures`]).
    #[doc(hidden)]
    fn keeps_failures(&self) -> bool;

    /// This stack with `B` appended as its innermost behaviour: the type `.layer(b)` builds
    /// (the first behaviour added stays outermost). Name it to add behaviours in a function
    /// generic over the stack:
    ///
    /// ```
    /// use catga_core::behavior::Tracing;
    /// use catga_core::{CatgaBuilder, Layer};
    ///
    /// fn with_tracing<L: Layer>(builder: CatgaBuilder<L>) -> CatgaBuilder<L::With<Tracing>> {
    ///     builder.layer(Tracing)
    /// }
    /// ```
    type With<B: Behavior>: Layer;

    /// Appends `behavior` as the innermost behaviour.
    #[doc(hidden)]
    fn __push_inner<B: Behavior>(self, behavior: B) -> Self::With<B>;
}

/// Only catga's stacks are layers: `Layer`'s methods are catga's plumbing, so an outside
/// implementation could only break.
mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Identity {}
    impl<B, L> Sealed for super::Stack<B, L> {}
}

/// The empty stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Layer for Identity {
    #[inline]
    fn run<P: Payload, T: Terminal<P>>(
        &self,
        msg: P,
        ctx: &Context,
        terminal: &T,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send {
        terminal.call(msg, ctx)
    }

    #[inline]
    fn observe_publish(&self, _: &dyn AnyMessage, _: &Context) {}

    fn observed_events(&self, _: &mut Vec<&'static str>) {}

    #[inline]
    fn observe_remote(&self, _: &str) {}

    fn keeps_failures(&self) -> bool {
        false
    }

    type With<B: Behavior> = Stack<B, Identity>;

    fn __push_inner<B: Behavior>(self, behavior: B) -> Self::With<B> {
        Stack {
            outer: behavior,
            inner: Identity,
        }
    }
}

/// A behaviour `outer` around the stack `inner`.
#[derive(Clone, Debug, Default)]
pub struct Stack<B, L> {
    outer: B,
    inner: L,
}

impl<B: Behavior, L: Layer> Layer for Stack<B, L> {
    #[inline]
    fn run<P: Payload, T: Terminal<P>>(
        &self,
        msg: P,
        ctx: &Context,
        terminal: &T,
    ) -> impl Future<Output = Result<P::Output, Error>> + Send {
        self.outer.handle(
            msg,
            ctx,
            NextLayer {
                layer: &self.inner,
                ctx,
                terminal,
            },
        )
    }

    #[inline]
    fn observe_publish(&self, event: &dyn AnyMessage, ctx: &Context) {
        self.outer.observe_publish(event, ctx);
        self.inner.observe_publish(event, ctx);
    }

    fn observed_events(&self, into: &mut Vec<&'static str>) {
        into.extend(self.outer.observed_events());
        self.inner.observed_events(into);
    }

    #[inline]
    fn observe_remote(&self, name: &str) {
        self.outer.observe_remote(name);
        self.inner.observe_remote(name);
    }

    fn keeps_failures(&self) -> bool {
        self.outer.keeps_failures() || self.inner.keeps_failures()
    }

    type With<C: Behavior> = Stack<B, L::With<C>>;

    fn __push_inner<C: Behavior>(self, behavior: C) -> Self::With<C> {
        Stack {
            outer: self.outer,
            inner: self.inner.__push_inner(behavior),
        }
    }
}

/// [`Next`] for a stack: the inner layers, then the terminal.
///
/// Each reference keeps its own lifetime: an `impl Future` may only capture lifetimes that
/// appear in the signature, not the intersection of several.
struct NextLayer<'l, 'c, 't, L, T> {
    layer: &'l L,
    ctx: &'c Context,
    terminal: &'t T,
}

impl<L, T> Clone for NextLayer<'_, '_, '_, L, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L, T> Copy for NextLayer<'_, '_, '_, L, T> {}

impl<P: Payload, L: Layer, T: Terminal<P>> Next<P> for NextLayer<'_, '_, '_, L, T> {
    #[inline]
    fn run(self, msg: P) -> impl Future<Output = Result<P::Output, Error>> + Send {
        self.layer.run(msg, self.ctx, self.terminal)
    }

    #[inline]
    fn goes_remote(self) -> bool {
        self.terminal.goes_remote()
    }
}
