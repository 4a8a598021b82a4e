//! The in-memory transport under test.

use crate::transport::MemoryTransport;

use super::{Capabilities, Corner, Settings, TransportUnderTest};

/// [`MemoryTransport`] in the suite: each test gets a bus of its own, on Tokio's paused clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory;

/// One test's bus: every [`connect`](Corner::connect) is a clone of it, as the applications of
/// one process share one bus.
#[derive(Clone, Debug)]
pub struct MemoryCorner {
    bus: MemoryTransport,
}

impl TransportUnderTest for Memory {
    type Corner = MemoryCorner;

    fn paused_clock(&self) -> bool {
        true
    }

    async fn open(&self, _test: &str, settings: &Settings) -> Option<MemoryCorner> {
        // Invalid settings are the suite's bug: fail loudly (`None` would skip every scenario).
        let bus = MemoryTransport::new()
            .max_deliveries(settings.max_deliveries)
            .and_then(|bus| bus.backoff([settings.redelivery_delay]))
            .unwrap_or_else(|e| panic!("the suite's settings for the in-memory transport: {e}"));
        Some(MemoryCorner { bus })
    }
}

impl Corner for MemoryCorner {
    type Transport = MemoryTransport;

    async fn connect(&self) -> MemoryTransport {
        self.bus.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            keeps_events_for_stopped_services: false,
            max_payload: 1 << 20,
            every_instance_shares_a_burst: true,
            answers_expired_requests: true,
        }
    }

    /// What waits for the instances of `service`, whatever the event
    /// ([`MemoryTransport::backlog`]): what an instance has taken and not settled yet is not
    /// counted, and a service with no running instance has nothing waiting.
    async fn unsettled(&self, service: &str, _event: &str) -> Option<u64> {
        u64::try_from(self.bus.backlog(service)).ok()
    }
}
