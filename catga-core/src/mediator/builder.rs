//! Building an application: state, behaviours, limits, then one check of the whole program.

use std::sync::Arc;
use std::time::Duration;

use crate::codec::WireFormat;
use crate::handler::HandlerMeta;
use crate::message::{MessageInfo, Request};
use crate::pipeline::{Behavior, Identity, Layer};
use crate::registry::{BuildError, Table};
use crate::state::States;
use crate::store::dead_letter::{DeadLetterStore, DynDeadLetterStore, MemoryDeadLetterStore};
use crate::transport::Transport;

use super::{Catga, Inner};

/// Default limit for [`Catga::dispatch_bytes`] payloads: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Default number of requests [`Catga::send_batch`] runs at once.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 32;

/// How many records the default, in-memory dead-letter store keeps (the oldest go first).
pub const DEFAULT_DEAD_LETTER_CAPACITY: usize = 10_000;

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
    settings: Settings,
}

/// What [`CatgaBuilder::handlers`] keeps.
pub(super) type HandlerFilter = dyn Fn(&HandlerMeta) -> bool + Send + Sync;

/// Everything but the layers, moved as one when `.layer(…)` changes the builder's type.
pub(super) struct Settings {
    pub(super) allow_unhandled: Vec<&'static MessageInfo>,
    pub(super) max_payload_bytes: usize,
    pub(super) batch_concurrency: usize,
    pub(super) transport: Option<Arc<dyn Transport>>,
    pub(super) service: String,
    pub(super) wire_format: WireFormat,
    pub(super) request_timeout: Duration,
    pub(super) serve_max_in_flight: usize,
    pub(super) dead_letters: Arc<dyn DynDeadLetterStore>,
    pub(super) dead_letters_configured: bool,
    pub(super) handler_filter: Option<Box<HandlerFilter>>,
}

impl CatgaBuilder<Identity> {
    pub(crate) fn new() -> Self {
        CatgaBuilder {
            states: States::new(),
            layers: Identity,
            settings: Settings {
                allow_unhandled: Vec::new(),
                max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
                batch_concurrency: DEFAULT_BATCH_CONCURRENCY,
                transport: None,
                service: "catga".to_string(),
                wire_format: WireFormat::Json,
                request_timeout: Duration::from_secs(30),
                serve_max_in_flight: 64,
                dead_letters: Arc::new(MemoryDeadLetterStore::bounded(
                    DEFAULT_DEAD_LETTER_CAPACITY,
                )),
                dead_letters_configured: false,
                handler_filter: None,
            },
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

    /// Adds a behaviour inside the ones added before it. The result's stack type is
    /// [`L::With<B>`](Layer::With), which a function generic over the stack names.
    pub fn layer<B: Behavior>(self, behavior: B) -> CatgaBuilder<L::With<B>> {
        CatgaBuilder {
            states: self.states,
            layers: self.layers.__push_inner(behavior),
            settings: self.settings,
        }
    }

    /// Declares that `M` is handled by another process, so its missing handler is not a
    /// build error. Sending it without a transport fails with
    /// [`ErrorKind::NoHandler`](crate::ErrorKind::NoHandler).
    pub fn allow_unhandled<M: Request>(mut self) -> Self {
        self.settings.allow_unhandled.push(M::info());
        self
    }

    /// The largest payload [`Catga::dispatch_bytes`] decodes.
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.settings.max_payload_bytes = limit;
        self
    }

    /// How many requests [`Catga::send_batch`] sends, and events [`Catga::publish_batch`]
    /// publishes, at once (at least 1).
    pub fn batch_concurrency(mut self, n: usize) -> Self {
        self.settings.batch_concurrency = n.max(1);
        self
    }

    /// Sends events, and requests without a handler in this process, through `transport`
    /// (see [`transport`](crate::transport)). Requests without a local handler are then not a
    /// build error: they are routed.
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.settings.transport = Some(Arc::new(transport));
        self
    }

    /// This application's service name: its instances share the load of what it serves
    /// (the queue group, consumer group or durable consumer). Default `catga`.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.settings.service = name.into();
        self
    }

    /// The codec of outgoing envelopes (default JSON; replies use the request's).
    pub fn wire_format(mut self, format: WireFormat) -> Self {
        self.settings.wire_format = format;
        self
    }

    /// How long a remote request waits for its reply when its context has no deadline
    /// (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    /// The most messages [`Catga::serve`] handles at once (default 64): back-pressure on the
    /// transport.
    pub fn serve_max_in_flight(mut self, n: usize) -> Self {
        self.settings.serve_max_in_flight = n.max(1);
        self
    }

    /// The application's dead-letter store: where a served message that is given up on is
    /// kept, with why, before the transport acknowledges it. That is every delivery the
    /// application cannot handle: bytes that are not an envelope or do not decode, an unknown
    /// name, an envelope claiming to be another message than its subject or stream carries,
    /// an event whose last delivery failed (unless a [`DeadLetter`](crate::behavior::DeadLetter)
    /// layer kept it already), one delivered more often than allowed without ever settling,
    /// and a follow-up event the transport would not take. Inspect it with
    /// [`Catga::dead_letters`] and replay with [`Catga::replay_dead_letter`].
    ///
    /// Default: in memory, at most [`DEFAULT_DEAD_LETTER_CAPACITY`] records, lost with the
    /// process. When the store fails, the message is not acknowledged: the transport delivers
    /// it again later.
    pub fn dead_letters<S: DeadLetterStore>(mut self, store: S) -> Self {
        self.settings.dead_letters = Arc::new(store);
        self.settings.dead_letters_configured = true;
        self
    }

    /// The former name of [`dead_letters`](Self::dead_letters).
    #[deprecated(
        note = "renamed `dead_letters`: the store keeps every message given up on, not only unreadable ones"
    )]
    pub fn reject_into<S: DeadLetterStore>(self, store: S) -> Self {
        self.dead_letters(store)
    }

    /// Uses only the handlers `keep` accepts, e.g. `.handlers(|h| h.is_in("shipping"))` for
    /// the handlers declared in the crate's `shipping` module ([`HandlerMeta::is_in`]; a
    /// handler's `name` is its full path, crate name first: `shop::shipping::ship`). For a
    /// process that links handlers it should not run, such as a gateway linking a domain
    /// crate, or several services tested in one process. Requests whose handlers are left out
    /// are then unhandled here (routed, with a transport).
    ///
    /// A filter that keeps none of the linked handlers is logged at `warn` by `build()`, and
    /// [`Catga::serve`] refuses to serve nothing
    /// ([`TransportError::NothingToServe`](crate::transport::TransportError::NothingToServe)).
    ///
    /// `keep` may capture (a list of module names read from configuration, say); it runs once
    /// per linked handler, in `build()`.
    pub fn handlers(mut self, keep: impl Fn(&HandlerMeta) -> bool + Send + Sync + 'static) -> Self {
        self.settings.handler_filter = Some(Box::new(keep));
        self
    }

    /// Checks the whole program and builds the application.
    ///
    /// # Errors
    /// A [`BuildError`] listing every problem: requests without a handler (unless a transport
    /// routes them), requests with more than one, handlers whose state was not registered,
    /// wire names used by two types, state registered twice. Each names the `file:line`.
    pub fn build(self) -> Result<Catga<L>, BuildError> {
        let routed = self.settings.transport.is_some();
        let table = Table::build(
            &self.states,
            &self.settings.allow_unhandled,
            routed,
            self.settings.handler_filter.as_deref(),
        )?;
        Ok(Catga {
            inner: Arc::new(Inner {
                layers: self.layers,
                table,
                settings: self.settings,
                health: crate::health::HealthChecks::default(),
            }),
        })
    }
}
