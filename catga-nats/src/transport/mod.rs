//! [`NatsTransport`]: catga's [`Transport`] over NATS.
//!
//! Events are JetStream messages, consumed through one durable pull consumer per service and
//! event ([`consumer`], [`durable`], [`pull`], [`poison`]); requests are core NATS requests
//! answered by a queue group per service, which each instance joins with one subscription per
//! in-flight slot so requests are shared by capacity ([`responder`]); events every instance
//! must see are a plain subscription per instance ([`observe`]). The events stream is set up
//! by [`stream`]. Each serving instance samples its durable consumers' lag ([`lag`]).

mod consumer;
mod durable;
mod lag;
mod observe;
mod poison;
mod publish;
mod pull;
mod request;
mod responder;
mod serve;
mod settle;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use catga_core::envelope::Envelope;
use catga_core::health::CheckStatus;
use catga_core::transport::{Inbound, Reply, ServePlan, Serving, Transport, TransportError};
use futures::future::BoxFuture;

use crate::config::Config;
use crate::reconnect::Reconnects;
use crate::subject::Subjects;

pub use lag::{CONSUMER_ACK_PENDING, CONSUMER_PENDING};
pub use responder::MAX_QUEUE_WEIGHT;

/// catga's transport over NATS: JetStream for events, request/reply with queue groups for
/// commands and queries. Cheap to clone (clones share one connection). See the
/// [crate docs](crate) for the subjects, the delivery guarantees and the failure behaviour.
#[derive(Clone)]
pub struct NatsTransport {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsTransport {
    /// The names it uses, not the client's internals: what reaches a log through `{:?}`
    /// stays short, and holds nothing about how the client authenticated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport")
            .field("prefix", &self.shared.config.prefix)
            .field("stream", &self.shared.stream)
            .finish_non_exhaustive()
    }
}

/// What the clones of a transport share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub subjects: Subjects,
    pub stream: String,
    pub config: Config,
    pub reconnects: Reconnects,
}

impl Shared {
    /// The id of the server the client is connected to: a restarted server has a new one.
    pub(crate) fn server_id(&self) -> String {
        self.client.server_info().server_id
    }
}

impl NatsTransport {
    /// The NATS client, for what catga does not wrap (monitoring, raw publishing in tests).
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The first token(s) of every subject this transport uses
    /// ([`NatsConnect::prefix`](crate::NatsConnect::prefix)).
    pub fn prefix(&self) -> &str {
        &self.shared.config.prefix
    }

    /// The JetStream stream holding the events.
    pub fn stream_name(&self) -> &str {
        &self.shared.stream
    }

    /// The subject events with this wire name are published on (see the [crate docs](crate)
    /// for how wire names map to subjects).
    pub fn event_subject(&self, wire_name: &str) -> String {
        self.shared.subjects.event(wire_name)
    }

    /// The subject requests with this wire name are sent to.
    pub fn request_subject(&self, wire_name: &str) -> String {
        self.shared.subjects.request(wire_name)
    }

    /// The durable consumer the instances of `service` share for the event `wire_name`.
    pub fn durable_name(&self, service: &str, wire_name: &str) -> String {
        crate::subject::durable_name(service, wire_name)
    }
}

impl Transport for NatsTransport {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(self.shared.publish(envelope))
    }

    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(self.shared.request(envelope, timeout))
    }

    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        Box::pin(serve::serve(self.shared.clone(), plan, inbound))
    }

    /// The client's connection state, which it keeps as it connects and reconnects (no I/O):
    /// up while connected, down while it reconnects (messages published meanwhile wait in the
    /// client's buffer) or before it first connected.
    fn health(&self) -> Option<CheckStatus> {
        Some(match self.shared.client.connection_state() {
            async_nats::connection::State::Connected => CheckStatus::Up,
            async_nats::connection::State::Disconnected => {
                CheckStatus::down("disconnected from the NATS server; reconnecting")
            }
            async_nats::connection::State::Pending => {
                CheckStatus::down("connecting to the NATS server")
            }
        })
    }
}
