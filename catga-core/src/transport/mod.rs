//! Transports: how messages reach handlers in other processes.
//!
//! A [`Transport`] carries [`Envelope`]s: events are published to every service that handles
//! them (each service's instances share the load), requests go to one instance of a service
//! that handles them and its reply comes back. An application chooses its transport when it is
//! built (`Catga::builder().transport(…)`); [`MemoryTransport`] has the same semantics inside
//! one process and is what tests use. The NATS and Redis transports live in `catga-nats` and
//! `catga-redis`.
//!
//! With a transport, `publish` sends the event to the transport and every service, this one
//! included, handles it when it arrives ([`Catga::serve`](crate::Catga::serve) consumes);
//! `send` of a request with a handler in this process dispatches it here, and one without goes
//! to the transport.
//!
//! ## Delivery
//!
//! A transport reads messages off its broker and hands them to the application's [`Inbound`];
//! the application decides what happens to each, and the transport carries that out. The
//! rules live on this side, once, so every transport acknowledges the same way:
//!
//! * an **event** comes with its [`Delivery`] (which delivery this is, and how many the
//!   transport makes at most) and is answered with a [`Disposition`]: acknowledge it
//!   ([`Disposition::Ack`]: handled), terminate it ([`Disposition::Terminate`]: set aside in
//!   the application's dead-letter store, never to be delivered again) or deliver it again
//!   ([`Disposition::Retry`]). Nothing is acknowledged or terminated before it was handled or
//!   stored where a person can find it: when the store itself fails, the answer is `Retry`.
//! * a **request** is answered with its [`Reply`], always: a handler error, a panic, an
//!   expired deadline all become a typed failure ([`RemoteFailure`]), never silence. The
//!   caller reads it as the same error it was where it happened: same code, retryability,
//!   doubt, validation field errors and details.
//! * bytes that are not an envelope at all ([`Rejected`]) are kept the same way.
//!
//! Where a message arrived decides what it is: the transport says which event or request its
//! subject or stream carries, and an envelope that claims to be something else is rejected,
//! never dispatched.

mod inbound;
mod memory;
pub mod options;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

// Defined with the errors (`error` depends on nothing above it), named here.
pub use crate::delivery::Delivery;
pub use crate::error::remote::{MAX_FAILURE_BYTES, RemoteFailure, ReplyError};
pub use crate::error::transport::TransportError;
pub use inbound::{Disposition, Inbound, Rejected};
pub use memory::MemoryTransport;

use crate::envelope::Envelope;
use crate::health::CheckStatus;

/// The other side's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The handler succeeded; its reply, encoded in the request's format.
    Ok(Vec<u8>),
    /// The handler (or the pipeline around it) failed.
    Err(RemoteFailure),
}

/// What a service consumes: its name (instances with the same name share the load) and the
/// wire names it handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServePlan {
    /// The service: the queue group, consumer group or durable consumer its instances share.
    pub service: String,
    /// Events it has handlers for.
    pub events: Vec<String>,
    /// Commands and queries it has handlers for.
    pub requests: Vec<String>,
    /// The most messages handled at once by this instance (back-pressure).
    pub max_in_flight: usize,
    /// Events every instance must see, not one instance per service (cache invalidation):
    /// the transport reports each to [`Inbound::observe`] on every instance, whether or not
    /// the service handles it.
    pub observe: Vec<String>,
}

/// A running consumer: stop it with [`Serving::shutdown`], which stops taking messages and
/// waits for the ones in flight.
///
/// Dropping it stops it too, without waiting: the shutdown goes on in a task of its own (on
/// the current Tokio runtime), so an instance never keeps consuming behind a `Serving` that
/// went out of scope. Call `shutdown().await` to know when it is done.
#[must_use = "dropping a `Serving` stops consuming; keep it while the application serves, and call `shutdown().await` to stop"]
pub struct Serving {
    stop: Option<Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>>,
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serving")
    }
}

impl Serving {
    /// A consumer stopped by `stop`.
    pub fn new(stop: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) -> Self {
        Serving {
            stop: Some(Box::new(stop)),
        }
    }

    /// Stops taking new messages and waits for those in flight to finish (and be
    /// acknowledged).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            stop().await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                tracing::debug!(target: "catga", "a `Serving` was dropped; stopping it in the background");
                drop(runtime.spawn(stop()));
            }
            Err(_) => tracing::warn!(target: "catga",
                "a `Serving` was dropped outside a Tokio runtime: its consumers stop when the runtime does"),
        }
    }
}

/// Carries envelopes between processes. Implementations must deliver each event to every
/// subscribed service at least once, and each request to one instance.
pub trait Transport: Send + Sync + 'static {
    /// A short name for errors and metrics: `memory`, `nats`, `redis`.
    fn name(&self) -> &'static str;

    /// Publishes an event to every service that handles it; resolves once the transport has
    /// accepted it (for a durable transport: stored).
    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sends a request to one instance of a service that handles it and waits up to `timeout`
    /// for the reply.
    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>>;

    /// Starts consuming what `plan` lists, handing each message to `inbound`.
    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>>;

    /// The connection's state as last known, for [`Catga::health`](crate::Catga::health)'s
    /// `transport` check: from memory, **without I/O** (it is called on every probe, also
    /// while the broker is unreachable). `None` (the default) for a transport with no
    /// connection to report.
    fn health(&self) -> Option<CheckStatus> {
        None
    }
}

/// Implements [`Transport`] for a pointer to a transport by forwarding every method.
macro_rules! forward_transport {
    ($(#[$doc:meta])* $pointer:ident) => {
        $(#[$doc])*
        impl<T: Transport + ?Sized> Transport for $pointer<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
                (**self).publish(envelope)
            }
            fn request(
                &self,
                envelope: Envelope,
                timeout: Duration,
            ) -> BoxFuture<'_, Result<Reply, TransportError>> {
                (**self).request(envelope, timeout)
            }
            fn serve(
                &self,
                plan: ServePlan,
                inbound: Arc<dyn Inbound>,
            ) -> BoxFuture<'_, Result<Serving, TransportError>> {
                (**self).serve(plan, inbound)
            }
            fn health(&self) -> Option<CheckStatus> {
                (**self).health()
            }
        }
    };
}

forward_transport!(
    /// A shared transport is a transport, so one chosen at run time can be passed around as
    /// `Arc<dyn Transport>`.
    Arc
);
forward_transport!(
    /// A boxed transport is a transport (`Box<dyn Transport>`, chosen at run time).
    Box
);
