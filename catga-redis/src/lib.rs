//! # catga-redis
//!
//! A catga [`Transport`](catga_core::transport::Transport) over Redis Streams: services in
//! different processes publish events to each other and send each other commands and queries
//! through one Redis server (6.2 or later, for `XAUTOCLAIM`; 7.0 recommended).
//!
//! ```no_run
//! use catga_core::prelude::*;
//! use catga_redis::RedisTransport;
//!
//! #[command(output = u64)]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct Ship { pub order: u64 }
//!
//! #[event]
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct OrderShipped { pub order: u64 }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("no courier")]
//! pub struct NoCourier;
//!
//! #[handler]
//! async fn ship(cmd: Ship, ctx: &Context) -> Result<u64, NoCourier> {
//!     ctx.publish(OrderShipped { order: cmd.order }).ok();
//!     Ok(cmd.order * 10)
//! }
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisTransport::connect("redis://127.0.0.1:6379")
//!     .key_prefix("shop")
//!     .build()
//!     .await?;
//! let app = Catga::builder().transport(redis).service("shipping").build()?;
//! // Consume `Ship` requests and `OrderShipped` events, sharing them with every other
//! // instance of the `shipping` service.
//! let serving = app.serve().await?;
//!
//! // Any process on the same server and prefix can now send `Ship`.
//! let tracking = app.send(Ship { order: 7 }).await?;
//! assert_eq!(tracking, 70);
//!
//! serving.shutdown().await; // stops reading, finishes and acknowledges what is in flight
//! # Ok(())
//! # }
//! ```
//!
//! ## How messages map to Redis
//! - **Events**: one stream per event wire name, `{prefix}:events:{name}`, added to with
//!   `XADD … MAXLEN ~ n`. Every service that handles the event is a consumer group on that
//!   stream, each instance a consumer, so each service gets every event and its instances
//!   share them. An entry is acknowledged (`XACK`) after its handlers succeeded, or failed for
//!   good; a retryable failure leaves it pending, and it is delivered again (up to
//!   [`max_deliveries`](RedisTransportBuilder::max_deliveries)).
//! - **Commands and queries**: one stream per wire name, `{prefix}:requests:{name}`, consumed
//!   the same way by the one service that handles it. The request carries the key of a fresh
//!   reply list; the handling instance pushes the reply there (`RPUSH` with an expiry) and the
//!   caller waits for it with `BLPOP` for its timeout. A handler's error comes back as the
//!   typed remote failure it was. A request to a stream no instance serves fails at once with
//!   `TransportError::NoResponders`; the consumer of an instance that died without shutting
//!   down counts until it is forgotten, after
//!   [`forget_idle`](RedisTransportBuilder::forget_idle) with nothing pending.
//! - An entry's fields are the envelope's headers ([`catga_core::envelope::header`]) plus
//!   `catga-payload`, so `XRANGE` shows readable messages, and the W3C trace context
//!   (`traceparent`) travels with each.
//!
//! ## Delivery guarantees
//! At least once per service, for events and requests alike: an entry is acknowledged only
//! after its handling finished, so a crash, a lost connection or a failed acknowledgement
//! means it is handled again: by the same instance when it reconnects, or, after
//! [`claim_idle`](RedisTransportBuilder::claim_idle), by another instance of the service
//! (`XAUTOCLAIM`). An instance given a stable name with
//! [`instance`](RedisTransportBuilder::instance) (its pod name, say) also resumes its own
//! unacknowledged entries as soon as it is restarted, without waiting for `claim_idle`.
//! Add catga's `Idempotency` behaviour to make redeliveries harmless.
//! Trimming (`MAXLEN ~`) does not wait for consumers: a service that falls further behind than
//! the stream's length loses the oldest entries it had not read. An event published before a
//! service's consumer group exists reaches it only with [`StartFrom::Beginning`].

#![warn(missing_docs)]

mod blocking;
mod builder;
mod config;
mod entry;
mod error;
mod keys;
mod reply;
mod request;
mod serve;
mod transport;

pub use builder::RedisTransportBuilder;
pub use config::StartFrom;
pub use error::{CommandError, ConnectError};
pub use transport::RedisTransport;

/// The transport's types, for `use catga_redis::prelude::*`.
pub mod prelude {
    pub use crate::{RedisTransport, StartFrom};
}
