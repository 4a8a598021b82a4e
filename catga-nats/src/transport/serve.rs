//! Serving a plan: a durable consumer per event, queue subscriptions per request (as many as
//! the instance's weight in the service's queue group), a plain subscription per observed
//! event, sharing the instance's in-flight slots, and the sampling of the consumers' lag
//! ([`lag`]); and the shutdown that stops them all before it returns.

use std::sync::Arc;

use catga_core::transport::{Inbound, ServePlan, Serving, TransportError};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::consumer::EventConsumer;
use super::durable;
use super::lag;
use super::observe::Observer;
use super::pull::Puller;
use super::responder::{self, Responder};
use crate::error::NatsError;
use crate::subject;

/// Subscribes to everything `plan` lists and starts consuming.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    plan: ServePlan,
    inbound: Arc<dyn Inbound>,
) -> Result<Serving, TransportError> {
    // Not a transport option: catga-core's plan, whose builder keeps it at least 1; a plan
    // written by hand with 0 would otherwise never start a handler.
    let limit = plan.max_in_flight.max(1);
    let slots = Arc::new(Semaphore::new(limit));
    let mut consumers = Vec::with_capacity(plan.events.len());
    let mut sampled = Vec::with_capacity(plan.events.len());
    if !plan.events.is_empty() {
        let stream = shared.ensure_stream().await?;
        for event in &plan.events {
            let config = durable::config(&shared, &plan.service, event);
            let known = shared.establish(config.clone(), stream).await?;
            let durable = config.durable_name.clone().unwrap_or_default();
            let puller = Puller::new(&shared.jetstream, &shared.stream, &durable)
                .await
                .map_err(|source| NatsError::Pull {
                    consumer: durable.clone(),
                    source: Box::new(source),
                })?;
            let event: Arc<str> = Arc::from(event.as_str());
            sampled.push(lag::Sampled {
                durable,
                service: plan.service.clone(),
                event: event.clone(),
            });
            consumers.push(EventConsumer {
                shared: shared.clone(),
                event,
                config,
                known,
                puller,
                inbound: inbound.clone(),
                slots: slots.clone(),
            });
        }
    }
    let group = subject::encode_wire_name(&plan.service);
    // The instance's weight in the queue group: the server picks one subscription of the group
    // uniformly per request, so one subscription per slot shares requests by slots.
    let weight = responder::queue_weight(limit);
    let mut responders = Vec::with_capacity(plan.requests.len());
    for request in &plan.requests {
        let subject = shared.subjects.request(request);
        let mut subscribers = Vec::with_capacity(weight);
        for _ in 0..weight {
            // Only hands a `SUB` to the connection's writer, without waiting for the server:
            // the one round trip below confirms them all. (An error drops those made so far,
            // which unsubscribes them.)
            let subscriber = shared
                .client
                .queue_subscribe(subject.clone(), group.clone())
                .await
                .map_err(|source| NatsError::Subscribe {
                    subject: subject.clone(),
                    group: group.clone(),
                    source,
                })?;
            subscribers.push(subscriber);
        }
        responders.push(Responder {
            shared: shared.clone(),
            subscribers,
            subject,
            name: Arc::from(request.as_str()),
            inbound: inbound.clone(),
            slots: slots.clone(),
        });
    }
    let mut observers = Vec::with_capacity(plan.observe.len());
    for event in &plan.observe {
        let subject = shared.subjects.event(event);
        let subscriber = shared
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| NatsError::Observe {
                subject: subject.clone(),
                source,
            })?;
        observers.push(Observer {
            shared: shared.clone(),
            event: Arc::from(event.as_str()),
            subscriber,
            inbound: inbound.clone(),
        });
    }
    // Once the server answered a round trip it has the subscriptions (every one above was only
    // written, none waited for: one round trip for all of them): a request sent as soon as
    // `serve` returns, from any connection, finds a responder, and an event published then is
    // observed. (A flush only writes them out: a request from another connection could reach
    // the server first and find no responder.)
    round_trip(&shared).await?;

    let stop = CancellationToken::new();
    let mut loops = Vec::with_capacity(consumers.len() + responders.len() + observers.len());
    for consumer in consumers {
        loops.push(tokio::spawn(consumer.run(stop.clone())));
    }
    for responder in responders {
        loops.push(tokio::spawn(responder.run(stop.clone())));
    }
    for observer in observers {
        loops.push(tokio::spawn(observer.run(stop.clone())));
    }
    if !sampled.is_empty() {
        loops.push(tokio::spawn(lag::run(
            shared.clone(),
            sampled,
            stop.clone(),
        )));
    }
    tracing::debug!(target: "catga::nats", service = %plan.service, events = plan.events.len(),
        requests = plan.requests.len(), observed = plan.observe.len(), max_in_flight = limit,
        queue_weight = weight, "consuming");
    Ok(Serving::new(move || {
        Box::pin(async move {
            // Each loop stops taking, unsubscribes (its pulls, its queue group, its
            // observations) and hands back what the server had already sent.
            stop.cancel();
            for task in loops {
                if let Err(e) = task.await {
                    tracing::error!(target: "catga::nats", error = %e, "a consumer task failed");
                }
            }
            // Every slot back means every message taken was handled and settled.
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            drop(slots.acquire_many(all).await);
            // Acknowledgements and replies are written to the socket before returning. With
            // the server gone, a flush waits for the reconnection: bounded, so a shutdown never
            // waits on a dead server (what was not acknowledged is redelivered after
            // `ack_wait`).
            let limit = shared.config.response_timeout;
            match tokio::time::timeout(limit, shared.client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(target: "catga::nats", error = %e,
                        "could not flush acknowledgements on shutdown; unacknowledged events will be redelivered");
                }
                Err(_) => {
                    tracing::warn!(target: "catga::nats", waited = ?limit,
                        "the server did not take the last acknowledgements in time on shutdown; unacknowledged events will be redelivered");
                }
            }
        })
    }))
}

/// Waits until the server has processed everything this client sent before. The server
/// handles one connection's operations in order, so once a message published now comes back
/// on a subscription made now, every subscription made earlier is in place.
async fn round_trip(shared: &Shared) -> Result<(), TransportError> {
    let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| TransportError::Unreachable(e);
    let inbox = shared.client.new_inbox();
    let mut echo = shared
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| unreachable(Box::new(e)))?;
    shared
        .client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(|e| unreachable(Box::new(e)))?;
    shared
        .client
        .flush()
        .await
        .map_err(|e| unreachable(Box::new(e)))?;
    let echoed = tokio::time::timeout(shared.config.response_timeout, echo.next()).await;
    drop(echo.unsubscribe().await);
    match echoed {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(unreachable(
            "the connection closed while subscribing".into(),
        )),
        Err(_) => Err(unreachable(
            format!(
                "the server did not confirm the subscriptions within {:?}",
                shared.config.response_timeout
            )
            .into(),
        )),
    }
}
