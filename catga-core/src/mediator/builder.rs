//! Building an application: state, behaviours, limits, then one check of the whole program.

use std::sync::Arc;

use crate::message::{MessageInfo, Request};
use crate::pipeline::{Behavior, Identity, Layer, PushInner};
use crate::registry::{BuildError, Table};
use crate::state::States;

use super::{Catga, Inner};

/// Default limit for [`Catga::dispatch_bytes`] payloads: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Default number of requests [`Catga::send_batch`] runs at once.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 32;

/// Configures a [`Catga`] application. Obtain one with [`Catga::builder`].
///
/// ```
/// use std::time::Duration;
/// use catga_core::prelude::*;
/// use catga_core::behavior::{Retry, Timeout};
///
/// # fn main() -> Result<(), catga_core::BuildError> {
/// let app = Catga::builder()
///     .state(String::from("shared config"))
///     .layer(Timeout::new(Duration::from_secs(5)))   // outermost
///     .layer(Retry::exponential(3))                  // inside the timeout
///     .build()?;
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `.build()`"]
pub struct CatgaBuilder<L = Identity> {
    states: States,
    layers: L,
    allow_unhandled: Vec<&'static MessageInfo>,
    max_payload_bytes: usize,
    batch_concurrency: usize,
}

impl CatgaBuilder<Identity> {
    pub(crate) fn new() -> Self {
        CatgaBuilder {
            states: States::new(),
            layers: Identity,
            allow_unhandled: Vec::new(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            batch_concurrency: DEFAULT_BATCH_CONCURRENCY,
        }
    }
}

impl<L: Layer> CatgaBuilder<L> {
    /// Registers a state value handlers can borrow as `&T` (or as `&self` of a handler impl).
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// Registers a state value that is already shared.
    pub fn state_arc<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        self.states.insert_arc(value);
        self
    }

    /// Adds a behaviour inside the ones added before it.
    pub fn layer<B: Behavior>(self, behavior: B) -> CatgaBuilder<L::Output>
    where
        L: PushInner<B>,
    {
        CatgaBuilder {
            states: self.states,
            layers: self.layers.push_inner(behavior),
            allow_unhandled: self.allow_unhandled,
            max_payload_bytes: self.max_payload_bytes,
            batch_concurrency: self.batch_concurrency,
        }
    }

    /// Declares that `M` is handled by another process, so its missing handler is not a
    /// build error. Sending it locally fails with [`ErrorKind::NoHandler`](crate::ErrorKind::NoHandler).
    pub fn allow_unhandled<M: Request>(mut self) -> Self {
        self.allow_unhandled.push(M::info());
        self
    }

    /// The largest payload [`Catga::dispatch_bytes`] decodes.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.max_payload_bytes = limit;
        self
    }

    /// How many requests [`Catga::send_batch`] runs at once (at least 1).
    pub fn batch_concurrency(mut self, n: usize) -> Self {
        self.batch_concurrency = n.max(1);
        self
    }

    /// Checks the whole program and builds the application.
    ///
    /// # Errors
    /// A [`BuildError`] listing every problem: requests without a handler, requests with more
    /// than one, handlers whose state was not registered, wire names used by two types, state
    /// registered twice. Each names the `file:line` involved.
    pub fn build(self) -> Result<Catga<L>, BuildError> {
        let table = Table::build(&self.states, &self.allow_unhandled)?;
        Ok(Catga {
            inner: Arc::new(Inner {
                layers: self.layers,
                table,
                max_payload_bytes: self.max_payload_bytes,
                batch_concurrency: self.batch_concurrency,
            }),
        })
    }
}
