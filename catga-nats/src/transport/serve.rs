//! Serving a plan: a durable consumer per event, a queue subscription per request, sharing
//! the instance's in-flight slots; and the shutdown that drains them.

use std::sync::Arc;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use catga_core::transport::{Inbound, ServePlan, Serving, TransportError};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::consumer::EventConsumer;
use super::responder::Responder;
use crate::error::NatsError;
use crate::subject;

/// The durable consumer the instances of `service` share for `event`.
fn consumer_config(shared: &Shared, service: &str, event: &str) -> pull::Config {
    let settings = &shared.settings;
    pull::Config {
        durable_name: Some(subject::durable_name(service, event)),
        filter_subject: shared.subjects.event(event),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: i64::from(settings.max_deliver),
        // A service consuming an event for the first time starts with the events published
        // from then on; afterwards the durable consumer resumes where it stopped.
        deliver_policy: DeliverPolicy::New,
        ..pull::Config::default()
    }
}

/// Subscribes to everything `plan` lists and starts consuming.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    plan: ServePlan,
    inbound: Arc<dyn Inbound>,
) -> Result<Serving, TransportError> {
    let limit = plan.max_in_flight.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let mut consumers = Vec::with_capacity(plan.events.len());
    for event in &plan.events {
        let config = consumer_config(&shared, &plan.service, event);
        let consumer = shared
            .jetstream
            .create_consumer_on_stream(config.clone(), &shared.stream)
            .await
            .map_err(|source| NatsError::Consumer {
                consumer: config.durable_name.clone().unwrap_or_default(),
                stream: shared.stream.clone(),
                subject: config.filter_subject.clone(),
                source: Box::new(source),
            })?;
        consumers.push(EventConsumer {
            shared: shared.clone(),
            event: Arc::from(event.as_str()),
            consumer,
            config,
            inbound: inbound.clone(),
            slots: slots.clone(),
        });
    }
    let group = subject::encode_wire_name(&plan.service);
    let mut responders = Vec::with_capacity(plan.requests.len());
    for request in &plan.requests {
        let subject = shared.subjects.request(request);
        let subscriber = shared
            .client
            .queue_subscribe(subject.clone(), group.clone())
            .await
            .map_err(|source| NatsError::Subscribe {
                subject: subject.clone(),
                group: group.clone(),
                source,
            })?;
        responders.push(Responder {
            shared: shared.clone(),
            subscriber,
            subject,
            name: Arc::from(request.as_str()),
            inbound: inbound.clone(),
            slots: slots.clone(),
        });
    }
    // Once the server answered this flush it has the subscriptions: a request sent as soon
    // as `serve` returns finds a responder.
    shared
        .client
        .flush()
        .await
        .map_err(|e| TransportError::Unreachable(Box::new(e)))?;

    let stop = CancellationToken::new();
    let mut loops = Vec::with_capacity(consumers.len() + responders.len());
    for consumer in consumers {
        loops.push(tokio::spawn(consumer.run(stop.clone())));
    }
    for responder in responders {
        loops.push(tokio::spawn(responder.run(stop.clone())));
    }
    tracing::debug!(target: "catga::nats", service = %plan.service, events = plan.events.len(),
        requests = plan.requests.len(), max_in_flight = limit, "consuming");
    Ok(Serving::new(move || {
        Box::pin(async move {
            stop.cancel();
            for task in loops {
                if let Err(e) = task.await {
                    tracing::error!(target: "catga::nats", error = %e, "a consumer task failed");
                }
            }
            // Every slot back means every message taken was handled and settled.
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            drop(slots.acquire_many(all).await);
            // Acknowledgements and replies are written to the socket before returning.
            if let Err(e) = shared.client.flush().await {
                tracing::warn!(target: "catga::nats", error = %e,
                    "could not flush acknowledgements on shutdown; unacknowledged events will be redelivered");
            }
        })
    }))
}
