//! A service's durable consumer for one event: created, checked, and created again when the
//! server lost it.
//!
//! The server's own delivery limit is off (`max_deliver` -1): catga counts deliveries
//! ([`Delivery`](catga_core::transport::Delivery)) and sets a message aside itself, kept in the
//! dead-letter store, then terminated. A server-side limit would drop a message that kept
//! crashing its consumer silently, left unacknowledged in the stream.
//!
//! A server restarted without its store has lost the stream and every consumer; an operator
//! may delete one consumer. A consumer whose durable is gone hears nothing (a pull to a
//! missing consumer is not answered), so each consumer checks its durable after every
//! reconnection and whenever a pull comes back empty, and creates it again:
//! * in a stream created again (its creation time changed), from the first event: everything
//!   in it was published after the loss, and the stream keeps every event for its retention
//!   period whether or not a consumer existed (limits retention, see `connect.rs`);
//! * in the same stream, from the last acknowledgement floor this instance saw: nothing
//!   unacknowledged is skipped, and what was acknowledged since is delivered again (at least
//!   once).
//!
//! A first-time consumer starts with the events published from then on (`New`); an existing
//! one keeps its start (the server cannot change it) and gets the current settings.

use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::response::Response;
use catga_core::transport::TransportError;

use super::Shared;
use super::stream::StreamCreated;
use crate::error::NatsError;
use crate::subject;

/// How long to wait before asking again when the server could not be asked.
pub(crate) const RECHECK: Duration = Duration::from_millis(500);

/// JetStream's "consumer not found" and "stream not found" error codes.
const CONSUMER_NOT_FOUND: u64 = 10014;
const STREAM_NOT_FOUND: u64 = 10059;

/// The durable consumer the instances of `service` share for `event`, as first created.
pub(crate) fn config(shared: &Shared, service: &str, event: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(subject::durable_name(service, event)),
        filter_subject: shared.subjects.event(event),
        ack_policy: AckPolicy::Explicit,
        ack_wait: shared.config.ack_wait,
        // catga's budget decides (see the module docs).
        max_deliver: -1,
        deliver_policy: DeliverPolicy::New,
        ..pull::Config::default()
    }
}

/// What a consumer last knew of its durable on the server: enough to create it again without
/// skipping an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    /// The stream it consumes, by creation time.
    pub stream: StreamCreated,
    /// The highest stream sequence below which everything was acknowledged.
    pub ack_floor: u64,
}

/// What the server says of a durable consumer.
#[derive(Debug)]
pub(crate) enum Health {
    /// It exists: its acknowledgement floor and the last stream sequence it delivered.
    Present { ack_floor: u64, delivered: u64 },
    /// The server does not have it (or its stream).
    Missing,
    /// The server could not be asked (not connected, timed out).
    Unknown(String),
}

impl Shared {
    /// The server's state of `durable`, or why it could not be had.
    pub(crate) async fn consumer_info(
        &self,
        durable: &str,
    ) -> Result<Option<consumer::Info>, String> {
        let subject = format!("CONSUMER.INFO.{}.{durable}", self.stream);
        match self
            .jetstream
            .request::<_, _, Response<consumer::Info>>(subject, &serde_json::json!({}))
            .await
        {
            Ok(Response::Ok(info)) => Ok(Some(info)),
            Ok(Response::Err { error }) => {
                let code = error.error_code().0;
                if code == CONSUMER_NOT_FOUND || code == STREAM_NOT_FOUND {
                    Ok(None)
                } else {
                    Err(error.to_string())
                }
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Whether `durable` exists, and how far it got.
    pub(crate) async fn health(&self, durable: &str) -> Health {
        match self.consumer_info(durable).await {
            Ok(Some(info)) => Health::Present {
                ack_floor: info.ack_floor.stream_sequence,
                delivered: info.delivered.stream_sequence,
            },
            Ok(None) => Health::Missing,
            Err(why) => Health::Unknown(why),
        }
    }

    /// Creates (or updates) the durable consumer `config` describes, keeping the start of an
    /// existing one, when a service starts serving.
    pub(crate) async fn establish(
        &self,
        mut config: pull::Config,
        stream: StreamCreated,
    ) -> Result<Known, TransportError> {
        let durable = config.durable_name.clone().unwrap_or_default();
        let existing = self.consumer_info(&durable).await.map_err(|reason| {
            TransportError::Broker(Box::new(NatsError::ConsumerState {
                consumer: durable.clone(),
                stream: self.stream.clone(),
                reason,
            }))
        })?;
        let mut ack_floor = 0;
        if let Some(info) = existing {
            // The server cannot change where a consumer starts; the rest is updated (a
            // consumer created with a server-side delivery limit loses it here).
            config.deliver_policy = info.config.deliver_policy;
            ack_floor = info.ack_floor.stream_sequence;
        }
        if self.create_durable(config.clone()).await.is_err() {
            // The stream may have been lost since connecting.
            self.ensure_stream().await?;
            self.create_durable(config).await?;
        }
        Ok(Known { stream, ack_floor })
    }

    /// Creates or updates a durable consumer.
    async fn create_durable(&self, config: pull::Config) -> Result<(), TransportError> {
        match self
            .jetstream
            .create_consumer_on_stream(config.clone(), &self.stream)
            .await
        {
            Ok(_) => Ok(()),
            Err(source) => Err(TransportError::Broker(Box::new(NatsError::Consumer {
                consumer: config.durable_name.clone().unwrap_or_default(),
                stream: self.stream.clone(),
                subject: config.filter_subject.clone(),
                source: Box::new(source),
            }))),
        }
    }

    /// Creates `config`'s durable consumer again after the server lost it (see the module
    /// docs), and the stream if it is gone too; returns what is known now.
    pub(crate) async fn recreate(
        &self,
        mut config: pull::Config,
        known: Known,
    ) -> Result<Known, TransportError> {
        let stream = self.ensure_stream().await?;
        let durable = config.durable_name.clone().unwrap_or_default();
        let same_stream = stream == known.stream;
        config.deliver_policy = if same_stream {
            DeliverPolicy::ByStartSequence {
                start_sequence: known.ack_floor.saturating_add(1),
            }
        } else {
            DeliverPolicy::All
        };
        let start = config.deliver_policy;
        match self.create_durable(config).await {
            Ok(()) => {}
            // Another instance of the service created it first, with its own start.
            Err(_) if matches!(self.consumer_info(&durable).await, Ok(Some(_))) => {}
            Err(error) => return Err(error),
        }
        if same_stream {
            tracing::warn!(target: "catga::nats", stream = %self.stream, consumer = %durable,
                ?start, "the durable consumer was gone (deleted?); created it again from its last acknowledgement floor");
        } else {
            tracing::warn!(target: "catga::nats", stream = %self.stream, consumer = %durable,
                "the events stream was created again (the server lost its state); created the durable consumer again from the stream's first event");
        }
        Ok(Known {
            stream,
            ack_floor: if same_stream { known.ack_floor } else { 0 },
        })
    }
}
