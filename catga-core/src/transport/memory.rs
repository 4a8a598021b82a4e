//! The in-memory transport: the semantics of a broker (services, shared load, replies,
//! redelivery of failed events) inside one process. The default, and what tests use.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Inbound, RemoteFailure, Reply, ServePlan, Serving, Transport, TransportError};
use crate::envelope::Envelope;

/// Messages larger than this are refused (as a broker would).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// An in-process transport. Clones share one bus, so several applications in one process (or
/// one test) talk through it like services through a broker: an event reaches every service
/// that serves it, once per service (its instances share the load); a request reaches one
/// instance; a failed event is redelivered up to `max_deliveries` times. Nothing is persisted:
/// an event published while no service consumes it is dropped.
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    bus: Arc<Bus>,
}

#[derive(Debug)]
struct Bus {
    queues: Mutex<HashMap<Route, Arc<Queue>>>,
    max_payload: usize,
    max_deliveries: u32,
    redelivery_delay: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Route {
    request: bool,
    name: String,
    service: String,
}

#[derive(Debug, Default)]
struct Queue {
    items: Mutex<VecDeque<Delivery>>,
    ready: Notify,
    consumers: AtomicUsize,
}

#[derive(Debug)]
struct Delivery {
    envelope: Envelope,
    attempt: u32,
    reply: Option<oneshot::Sender<Reply>>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a queue inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryTransport {
    /// An empty bus: 1 MiB payload limit, failed events delivered up to 3 times, 100 ms apart.
    pub fn new() -> Self {
        MemoryTransport {
            bus: Arc::new(Bus {
                queues: Mutex::new(HashMap::new()),
                max_payload: DEFAULT_MAX_PAYLOAD,
                max_deliveries: 3,
                redelivery_delay: Duration::from_millis(100),
            }),
        }
    }

    /// Delivers a failed event up to `n` times in all, `delay` apart (set before cloning).
    pub fn max_deliveries(mut self, n: u32, delay: Duration) -> Self {
        if let Some(bus) = Arc::get_mut(&mut self.bus) {
            bus.max_deliveries = n.max(1);
            bus.redelivery_delay = delay;
        }
        self
    }

    fn check_size(&self, envelope: &Envelope) -> Result<(), TransportError> {
        if envelope.payload.len() > self.bus.max_payload {
            return Err(TransportError::TooLarge {
                size: envelope.payload.len(),
                limit: self.bus.max_payload,
            });
        }
        Ok(())
    }

    fn queue(&self, route: Route) -> Arc<Queue> {
        lock(&self.bus.queues).entry(route).or_default().clone()
    }
}

impl Queue {
    fn push(&self, delivery: Delivery) {
        lock(&self.items).push_back(delivery);
        self.ready.notify_one();
    }

    async fn pop(&self) -> Delivery {
        loop {
            let notified = self.ready.notified();
            if let Some(delivery) = lock(&self.items).pop_front() {
                return delivery;
            }
            notified.await;
        }
    }
}

impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn publish(&self, envelope: Envelope) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            self.check_size(&envelope)?;
            let targets: Vec<Arc<Queue>> = lock(&self.bus.queues)
                .iter()
                .filter(|(route, _)| !route.request && route.name == envelope.name)
                .map(|(_, queue)| queue.clone())
                .collect();
            for queue in targets {
                queue.push(Delivery {
                    envelope: envelope.clone(),
                    attempt: 1,
                    reply: None,
                });
            }
            Ok(())
        })
    }

    fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        Box::pin(async move {
            self.check_size(&envelope)?;
            let target = lock(&self.bus.queues)
                .iter()
                .find(|(route, queue)| {
                    route.request
                        && route.name == envelope.name
                        && queue.consumers.load(Ordering::Acquire) > 0
                })
                .map(|(_, queue)| queue.clone());
            let Some(queue) = target else {
                return Err(TransportError::NoResponders(envelope.name.into_owned()));
            };
            let (tx, rx) = oneshot::channel();
            queue.push(Delivery {
                envelope,
                attempt: 1,
                reply: Some(tx),
            });
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(TransportError::Closed),
                Err(_) => Err(TransportError::Timeout(timeout)),
            }
        })
    }

    fn serve(
        &self,
        plan: ServePlan,
        inbound: Arc<dyn Inbound>,
    ) -> BoxFuture<'_, Result<Serving, TransportError>> {
        Box::pin(async move {
            let stop = CancellationToken::new();
            let limit = plan.max_in_flight.max(1);
            let slots = Arc::new(Semaphore::new(limit));
            let routes = plan
                .events
                .iter()
                .map(|name| (false, name))
                .chain(plan.requests.iter().map(|name| (true, name)));
            let mut queues = Vec::new();
            for (request, name) in routes {
                let queue = self.queue(Route {
                    request,
                    name: name.clone(),
                    service: plan.service.clone(),
                });
                queue.consumers.fetch_add(1, Ordering::AcqRel);
                queues.push(queue.clone());
                let consumer = Consumer {
                    queue,
                    inbound: inbound.clone(),
                    slots: slots.clone(),
                    bus: self.bus.clone(),
                };
                tokio::spawn(consumer.run(stop.clone()));
            }
            Ok(Serving::new(move || {
                Box::pin(async move {
                    stop.cancel();
                    for queue in &queues {
                        queue.consumers.fetch_sub(1, Ordering::AcqRel);
                    }
                    // Every slot back means nothing is in flight any more.
                    let drained = u32::try_from(limit).unwrap_or(u32::MAX);
                    let _ = slots.acquire_many(drained).await;
                })
            }))
        })
    }
}

/// One service instance consuming one route.
struct Consumer {
    queue: Arc<Queue>,
    inbound: Arc<dyn Inbound>,
    slots: Arc<Semaphore>,
    bus: Arc<Bus>,
}

impl Consumer {
    async fn run(self, stop: CancellationToken) {
        loop {
            let delivery = tokio::select! {
                () = stop.cancelled() => return,
                delivery = self.queue.pop() => delivery,
            };
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let inbound = self.inbound.clone();
            let queue = self.queue.clone();
            let bus = self.bus.clone();
            tokio::spawn(async move {
                let Delivery {
                    envelope,
                    attempt,
                    reply,
                } = delivery;
                let result = inbound.dispatch(envelope.clone()).await;
                match (reply, result) {
                    (Some(reply), Ok(bytes)) => {
                        let _ = reply.send(Reply::Ok(bytes.unwrap_or_default()));
                    }
                    (Some(reply), Err(error)) => {
                        let _ = reply.send(Reply::Err(RemoteFailure::of(&error)));
                    }
                    (None, Ok(_)) => {}
                    (None, Err(error)) if attempt < bus.max_deliveries && error.is_retryable() => {
                        tracing::debug!(target: "catga", message = %envelope.name, attempt, error = %error,
                            "event failed; redelivering");
                        tokio::time::sleep(bus.redelivery_delay).await;
                        queue.push(Delivery {
                            envelope,
                            attempt: attempt + 1,
                            reply: None,
                        });
                    }
                    (None, Err(error)) => {
                        tracing::warn!(target: "catga", message = %envelope.name, attempt, error = %error,
                            "event failed for good; acknowledged (a DeadLetter layer keeps it)");
                    }
                }
                drop(slot);
            });
        }
    }
}
