//! What a transport tells the suite: how to open a corner of its broker for one test, what a
//! corner connects, and where the transports differ.

use std::future::Future;
use std::time::Duration;

use crate::transport::Transport;

/// What a scenario asks of the transport, in the suite's words; each transport maps them onto
/// its own settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The most times an event is delivered, which is also the most times its handlers run
    /// (default 3).
    pub max_deliveries: u32,
    /// How long after a retryable failure an event is delivered again (default 50 ms).
    pub redelivery_delay: Duration,
    /// How long a delivery may stay unsettled before the broker hands it out again because
    /// its consumer died or hung (the NATS acknowledgement wait, the Redis claim idle time);
    /// `None` keeps the transport's test default.
    pub takeover: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_deliveries: 3,
            redelivery_delay: Duration::from_millis(50),
            takeover: None,
        }
    }
}

/// Where transports genuinely differ; a scenario that depends on one of these asserts each
/// side's documented behaviour, never nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Events published while no instance of a service runs wait for the service (a durable
    /// broker). The in-memory transport keeps nothing for a service that is not running.
    pub keeps_events_for_stopped_services: bool,
    /// The largest payload the transport carries; a larger message is refused before it is
    /// sent (`TransportError::TooLarge`).
    pub max_payload: usize,
    /// Every instance of a service takes a share of a burst of events, because consumers wait
    /// on the broker and are served in turn (Redis consumer groups). Where one instance may
    /// take a whole burst in one pull (NATS), the suite asks that at least two of three
    /// instances took a share.
    pub every_instance_shares_a_burst: bool,
    /// A request whose deadline passed before an instance took it is answered with a
    /// `timeout` failure. Otherwise it is dropped unanswered (nobody waits for it any more)
    /// and the caller's own wait ends with `TransportError::Timeout`.
    pub answers_expired_requests: bool,
}

/// One test's corner of a broker: a prefix (stream, key space, …) no other test uses, so tests
/// run in parallel without seeing each other's traffic. Everything connected from one corner
/// reaches the same services; cleaning up is the corner's `Drop`.
pub trait Corner: Send + Sync + 'static {
    /// The transport under test.
    type Transport: Transport + Clone;

    /// A new connection to this corner, as a separate process would hold: one per
    /// application in a scenario, whether it is another instance of a service or another
    /// service.
    fn connect(&self) -> impl Future<Output = Self::Transport> + Send;

    /// Where this transport differs from the others.
    fn capabilities(&self) -> Capabilities;

    /// How many events named `event` the broker still holds for `service` unsettled: not
    /// delivered yet, or delivered and neither acknowledged nor terminated. `None` where the
    /// transport cannot tell. Scenarios wait on what the handlers did before they look here,
    /// so a transport that cannot see what is in flight (the in-memory one) may leave it out.
    fn unsettled(&self, service: &str, event: &str) -> impl Future<Output = Option<u64>> + Send;
}

/// A transport taking part in the suite: it opens a fresh, isolated [`Corner`] per test.
///
/// A transport crate implements it in its tests (a broker's corner picks a prefix of its own
/// and connects with the settings; it skips through
/// [`services::unavailable`](super::services::unavailable) when its server is unreachable).
/// The shape, on a bus of the test's own:
///
/// ```
/// use catga_core::testkit::{Capabilities, Corner, Settings, TransportUnderTest};
/// use catga_core::transport::MemoryTransport;
///
/// struct Bus;
/// struct BusCorner(MemoryTransport);
///
/// impl TransportUnderTest for Bus {
///     type Corner = BusCorner;
///
///     async fn open(&self, _test: &str, settings: &Settings) -> Option<BusCorner> {
///         let bus = MemoryTransport::new()
///             .max_deliveries(settings.max_deliveries)
///             .and_then(|bus| bus.backoff([settings.redelivery_delay]))
///             .expect("the suite's settings are valid");
///         Some(BusCorner(bus))
///     }
/// }
///
/// impl Corner for BusCorner {
///     type Transport = MemoryTransport;
///
///     async fn connect(&self) -> MemoryTransport {
///         self.0.clone()
///     }
///
///     fn capabilities(&self) -> Capabilities {
///         Capabilities {
///             keeps_events_for_stopped_services: false,
///             max_payload: 1 << 20,
///             every_instance_shares_a_burst: true,
///             answers_expired_requests: true,
///         }
///     }
///
///     async fn unsettled(&self, _service: &str, _event: &str) -> Option<u64> {
///         None
///     }
/// }
/// ```
pub trait TransportUnderTest: Send + Sync + 'static {
    /// What [`open`](Self::open) gives.
    type Corner: Corner;

    /// Whether the scenarios run on Tokio's paused clock, as an in-process transport can
    /// (virtual time: the timeouts of a scenario cost nothing), rather than on a multi-thread
    /// runtime in real time, as a real broker needs. `false` unless overridden.
    fn paused_clock(&self) -> bool {
        false
    }

    /// A corner of the broker for the scenario `test`, configured with `settings`, or `None`
    /// when the broker is unreachable and the test is to be skipped (after
    /// [`services::unavailable`](super::services::unavailable) said why; it panics instead
    /// when the services are required).
    fn open(
        &self,
        test: &str,
        settings: &Settings,
    ) -> impl Future<Output = Option<Self::Corner>> + Send;
}
