//! # catga
//!
//! A CQRS / mediator framework: declare commands, queries and events as plain types, write
//! handlers as plain `async fn`s, and dispatch through one mediator, with behaviours (tracing,
//! validation, timeout, retry, …) around every dispatch. Handlers are found at compile time
//! and link time, and a dispatch is an index into a table and a call: no type lookup, no
//! allocation.
//!
//! ```rust,standalone_crate
//! use catga_core::prelude::*;
//!
//! #[command(output = u64)]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct PlaceOrder { pub customer: u64, pub total: u64 }
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct OrderPlaced { pub id: u64, pub total: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("orders are closed")]
//! pub struct Closed;
//!
//! #[handler]
//! async fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, Closed> {
//!     let id = 42;
//!     ctx.publish(OrderPlaced { id, total: cmd.total }).ok();
//!     Ok(id)
//! }
//!
//! #[handler]
//! async fn notify(event: &OrderPlaced) -> Result<(), Closed> {
//!     assert_eq!(event.id, 42);
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = Catga::builder().build()?;
//! let id = app.send(PlaceOrder { customer: 7, total: 30 }).await?;
//! assert_eq!(id, 42);
//! # Ok(())
//! # }
//! ```
//!
//! Start with [`message`] (declaring messages), [`handler`](mod@handler) (writing handlers),
//! [`Catga`] (building and dispatching), [`pipeline`] and [`behavior`] (behaviours).

#![warn(missing_docs)]
// `unsafe` lives in `dispatch/inline.rs` and `dispatch/slot_pool.rs` only; every block says why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod aggregate;
pub mod behavior;
pub mod cluster;
pub mod codec;
pub mod context;
mod delivery;
// The machinery that runs a handler's future (inline slots, attempts, guards, joins, outcomes).
mod dispatch;
pub mod envelope;
pub mod error;
pub mod handler;
pub mod health;
pub mod id;
pub mod mediator;
pub mod message;
mod monotonic;
pub mod payload;
pub mod pipeline;
pub mod policy;
// Macro support and the dispatch table: named publicly only through `__private` (and
// `BuildError`/`Problem` at the root).
mod registry;
pub mod saga;
pub mod secret;
pub mod state;
pub mod static_app;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;
pub mod validate;

#[doc(hidden)]
#[path = "private/mod.rs"]
pub mod __private;

// The guides' code blocks run as doctests, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[doc(test(attr(deny(warnings))))] // the first code a user copies compiles cleanly
mod readme_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/quickstart.md")]
mod quickstart_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/behaviours.md")]
mod behaviors_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/transports.md")]
mod transports_doctests {}
#[cfg(doctest)]
#[doc = include_str!("../../docs/sagas-and-aggregates.md")]
mod sagas_and_aggregates_doctests {}
// docs/nats.md and docs/redis.md compile as doctests of catga-nats and catga-redis, whose
// APIs they show.

pub use aggregate::{Aggregate, Loaded, Repository};
pub use catga_macros::{command, event, handler, query, static_app};
pub use codec::{Codec, CodecError, Json, MessagePack, WireFormat};
pub use context::{Context, MAX_PENDING_EVENTS};
pub use dispatch::inline::INLINE_FUTURE_BYTES;
pub use error::{BoxError, Error, ErrorCode, ErrorKind, HandlerFailure, Retryable};
pub use handler::{EventHandler, HandlerMeta, RequestHandler};
pub use id::{SnowflakeGenerator, SnowflakeId};
pub use mediator::{Catga, CatgaBuilder};
pub use message::AnyMessage;
pub use message::{Command, Event, Location, Message, MessageInfo, MessageKind, Query, Request};
pub use payload::Payload;
pub use pipeline::{Behavior, Identity, Layer, Next, Stack};
pub use registry::{BuildError, Problem};
pub use saga::{Saga, SagaError, SagaState, SagaStatus, StoredSagaError};
pub use static_app::{StaticBuilder, StaticCatga};
pub use tokio_util::sync::CancellationToken;
/// The `uuid` crate, whose [`Uuid`](uuid::Uuid) catga's message, correlation and causation ids
/// are ([`Context::with_message_id`], [`Context::message_id`]): use it without a dependency of
/// your own at a matching version.
pub use uuid;
pub use validate::{FieldError, Validate, ValidationErrors};

/// Everything a typical application module needs: `use catga_core::prelude::*;`.
pub mod prelude {
    pub use crate::behavior::{
        Caching, CircuitBreaker, ConcurrencyLimit, DeadLetter, Idempotency, RateLimit, Retry,
        Timeout, Tracing, Validation,
    };
    pub use crate::pipeline::Layer;
    pub use crate::store::dead_letter::DeadLetterStore;
    pub use crate::{
        Behavior, Catga, Command, Context, Error, ErrorCode, ErrorKind, Event, HandlerMeta,
        Message, Next, Payload, Query, Request, Retryable, Validate, ValidationErrors, command,
        event, handler, query,
    };
    pub use serde::{Deserialize, Serialize};
}
