//! A broker that can be taken down and brought back, for tests of what waits for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::envelope::Envelope;
use crate::transport::{
    Inbound, MemoryTransport, Reply, ServePlan, Serving, Transport, TransportError,
};

/// The in-memory transport, refusing every publish with
/// [`TransportError::Unreachable`] while its `down` flag is set: an outbox relay's or a
/// follow-up's view of a broker that went away. Requests and serving pass through.
pub struct BrokerOutage {
    down: Arc<AtomicBool>,
    inner: MemoryTransport,
}

impl BrokerOutage {
    /// Over a new in-memory transport; down while `down` is set.
    pub fn new(down: Arc<AtomicBool>) -> BrokerOutage {
        BrokerOutage::over(MemoryTransport::new(), down)
    }

    /// Over `inner` (shared with other applications); down while `down` is set.
    pub fn over(inner: MemoryTransport, down: Arc<AtomicBool>) -> BrokerOutage {
        BrokerOutage { down, inner }
    }
}

impl Transport for BrokerOutage {
    fn name(&self) -> &'static str {
        "outage"
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(TransportError::Unreachable("the broker is down".into()))
            });
        }
        self.inner.publish(envelope)
    }

    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        self.inner.request(envelope, timeout)
    }

    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        self.inner.serve(plan, inbound)
    }
}
