//! The in-memory transport: the semantics of a broker (services, shared load, replies,
//! redelivery of failed events) inside one process. The default, and what tests use.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Delivery, Disposition, Inbound, RemoteFailure, Reply, ServePlan, Serving, Transport,
    TransportError,
};
use crate::envelope::Envelope;
use crate::transport::options::{self, InvalidOption};

/// Messages larger than this are refused (as a broker would).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// An in-process transport. Clones share one bus, so several applications in one process (or
/// one test) talk through it like services through a broker: an event reaches every service
/// that serves it, once per service (its instances share the load); a request reaches one
/// instance; a failed event is redelivered up to `max_deliveries` times, then kept in the
/// application's dead-letter store.
///
/// Nothing is persisted: an event published while no instance of a service serves it is
/// not kept for that service, and when the last instance of a service stops, the events
/// queued for it and not yet taken are dropped with it (logged at `warn` with their count).
#[derive(Clone, Debug)]
pub struct MemoryTransport {
    bus: Arc<Bus>,
}

#[derive(Debug)]
struct Bus {
    queues: Mutex<HashMap<Route, Arc<Queue>>>,
    max_payload: usize,
    max_deliveries: u32,
    /// The wait before each redelivery (`options::redelivery_delay`: the last one repeats).
    backoff: Vec<Duration>,
}

/// What a queue carries and for whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Flow {
    /// Events, shared by the instances of a service.
    Event,
    /// Requests, shared by the instances of a service.
    Request,
    /// Event names, for one instance (its `ServePlan::observe`).
    Observe,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Route {
    flow: Flow,
    name: String,
    /// The service; for [`Flow::Observe`], the instance.
    owner: String,
}

#[derive(Debug, Default)]
struct Queue {
    items: Mutex<VecDeque<Parcel>>,
    ready: Notify,
    consumers: AtomicUsize,
}

#[derive(Debug)]
struct Parcel {
    envelope: Envelope,
    attempt: u32,
    reply: Option<oneshot::Sender<Reply>>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

/// A setting made on a transport that was already cloned.
fn shared(option: &'static str, value: String) -> InvalidOption {
    InvalidOption::new(
        option,
        value,
        "set it before cloning the transport: every clone shares one bus and its settings",
    )
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
                backoff: vec![Duration::from_millis(100)],
            }),
        }
    }

    /// Delivers a failed event at most `n` times in all, the first delivery included (`1`
    /// turns redelivery off), as `max_deliveries` does on the NATS and Redis transports.
    ///
    /// # Errors
    /// [`InvalidOption`] for `0`, or when this transport was already cloned: the setting
    /// belongs to the bus every clone shares, so it is made on the first, before cloning.
    pub fn max_deliveries(mut self, n: u32) -> Result<Self, InvalidOption> {
        options::check_max_deliveries(n)?;
        match Arc::get_mut(&mut self.bus) {
            Some(bus) => bus.max_deliveries = n,
            None => return Err(shared("max_deliveries", n.to_string())),
        }
        Ok(self)
    }

    /// The wait before each redelivery of a failed event: the first entry before the second
    /// delivery, the next before the third, the last repeating (default 100 ms), as `backoff`
    /// does on the NATS and Redis transports.
    ///
    /// # Errors
    /// [`InvalidOption`] for an empty schedule, a delay over 100 years, or a transport already
    /// cloned (see [`max_deliveries`](Self::max_deliveries)).
    pub fn backoff(
        mut self,
        delays: impl IntoIterator<Item = Duration>,
    ) -> Result<Self, InvalidOption> {
        let delays: Vec<Duration> = delays.into_iter().collect();
        options::check_backoff(&delays)?;
        match Arc::get_mut(&mut self.bus) {
            Some(bus) => bus.backoff = delays,
            None => return Err(shared("backoff", format!("{delays:?}"))),
        }
        Ok(self)
    }

    /// How many messages wait for the instances of `service` (taken by none yet): a way to
    /// see back-pressure in tests. Always 0 for a service with no running instance, since
    /// nothing is kept for one.
    pub fn backlog(&self, service: &str) -> usize {
        lock(&self.bus.queues)
            .iter()
            .filter(|(route, _)| route.flow != Flow::Observe && route.owner == service)
            .map(|(_, queue)| lock(&queue.items).len())
            .sum()
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
    fn push(&self, parcel: Parcel) {
        lock(&self.items).push_back(parcel);
        self.ready.notify_one();
    }

    /// Puts back a parcel taken but not handled, where it was.
    fn give_back(&self, parcel: Parcel) {
        lock(&self.items).push_front(parcel);
        self.ready.notify_one();
    }

    async fn pop(&self) -> Parcel {
        loop {
            let notified = self.ready.notified();
            if let Some(parcel) = lock(&self.items).pop_front() {
                return parcel;
            }
            notified.await;
        }
    }
}

impl Bus {
    /// One instance stopped consuming `route`: when it was the last, the queue goes, and
    /// with it what was queued for the service.
    fn leave(&self, route: &Route, queue: &Arc<Queue>) {
        if queue.consumers.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut queues = lock(&self.queues);
        let ours = queues.get(route).is_some_and(|q| Arc::ptr_eq(q, queue));
        if ours && queue.consumers.load(Ordering::Acquire) == 0 {
            queues.remove(route);
            drop(queues);
            let dropped = lock(&queue.items).len();
            if dropped > 0 && route.flow != Flow::Observe {
                tracing::warn!(target: "catga", message = %route.name, service = %route.owner, dropped,
                    "the last instance of a service stopped; the in-memory transport drops what was queued for it");
            }
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
            let targets: Vec<(Flow, Arc<Queue>)> = lock(&self.bus.queues)
                .iter()
                .filter(|(route, _)| route.flow != Flow::Request && route.name == envelope.name)
                .map(|(route, queue)| (route.flow, queue.clone()))
                .collect();
            for (flow, queue) in targets {
                let envelope = match flow {
                    // An observer needs the name only.
                    Flow::Observe => Envelope {
                        payload: Vec::new(),
                        ..envelope.clone()
                    },
                    _ => envelope.clone(),
                };
                queue.push(Parcel {
                    envelope,
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
                    route.flow == Flow::Request
                        && route.name == envelope.name
                        && queue.consumers.load(Ordering::Acquire) > 0
                })
                .map(|(_, queue)| queue.clone());
            let Some(queue) = target else {
                return Err(TransportError::NoResponders(envelope.name.into_owned()));
            };
            let (tx, rx) = oneshot::channel();
            queue.push(Parcel {
                envelope,
                attempt: 1,
                reply: Some(tx),
            });
            match tokio::time::timeout(timeout, rx).await {
                // A failure crosses as the bytes every transport sends, so it reads here
                // exactly as it would from another process.
                Ok(Ok(Reply::Err(failure))) => RemoteFailure::decode(&failure.encode())
                    .map(Reply::Err)
                    .map_err(TransportError::UnreadableReply),
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
            let instance = Uuid::now_v7().to_string();
            let routes = plan
                .events
                .iter()
                .map(|name| (Flow::Event, name, plan.service.as_str()))
                .chain(
                    plan.requests
                        .iter()
                        .map(|name| (Flow::Request, name, plan.service.as_str())),
                )
                .chain(
                    plan.observe
                        .iter()
                        .map(|name| (Flow::Observe, name, instance.as_str())),
                );
            let mut joined = Vec::new();
            let mut tasks = Vec::new();
            for (flow, name, owner) in routes {
                let route = Route {
                    flow,
                    name: name.clone(),
                    owner: owner.to_string(),
                };
                let queue = self.queue(route.clone());
                queue.consumers.fetch_add(1, Ordering::AcqRel);
                joined.push((route.clone(), queue.clone()));
                let consumer = Consumer {
                    route,
                    queue,
                    inbound: inbound.clone(),
                    slots: slots.clone(),
                    bus: self.bus.clone(),
                };
                tasks.push(tokio::spawn(consumer.run(stop.clone())));
            }
            let bus = self.bus.clone();
            Ok(Serving::new(move || {
                Box::pin(shutdown(bus, stop, tasks, joined, slots, limit))
            }))
        })
    }
}

/// Stops an instance: its consumers take nothing more (what one had taken but not started
/// goes back to its queue), the messages in flight finish, then its queues are released.
async fn shutdown(
    bus: Arc<Bus>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    joined: Vec<(Route, Arc<Queue>)>,
    slots: Arc<Semaphore>,
    limit: usize,
) {
    stop.cancel();
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(target: "catga", error = %error, "an in-memory consumer task failed");
        }
    }
    // Every slot back means nothing is in flight any more.
    let drained = u32::try_from(limit).unwrap_or(u32::MAX);
    drop(slots.acquire_many(drained).await);
    for (route, queue) in &joined {
        bus.leave(route, queue);
    }
}

/// One service instance consuming one route.
struct Consumer {
    route: Route,
    queue: Arc<Queue>,
    inbound: Arc<dyn Inbound>,
    slots: Arc<Semaphore>,
    bus: Arc<Bus>,
}

impl Consumer {
    async fn run(self, stop: CancellationToken) {
        loop {
            let parcel = tokio::select! {
                biased;
                () = stop.cancelled() => return,
                parcel = self.queue.pop() => parcel,
            };
            if self.route.flow == Flow::Observe {
                // A panic in what the application runs must not end the observation.
                let name = &parcel.envelope.name;
                let observed =
                    std::panic::catch_unwind(AssertUnwindSafe(|| self.inbound.observe(name)));
                if observed.is_err() {
                    tracing::error!(target: "catga", event = %name,
                        "observing an event panicked; the observation goes on");
                }
                continue;
            }
            let slot = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.queue.give_back(parcel);
                    return;
                }
                slot = self.slots.clone().acquire_owned() => slot,
            };
            let Ok(slot) = slot else {
                self.queue.give_back(parcel);
                return;
            };
            let (inbound, queue, bus) =
                (self.inbound.clone(), self.queue.clone(), self.bus.clone());
            let name = self.route.name.clone();
            tokio::spawn(async move {
                deliver(&*inbound, &name, parcel, &queue, &bus).await;
                drop(slot);
            });
            // One parcel at a time: the other instances of the service take the next ones
            // of a burst, as consumers waiting on a broker would, instead of this one taking
            // as many as it has slots.
            tokio::task::yield_now().await;
        }
    }
}

/// Hands one parcel to the application and carries out what it says.
async fn deliver(inbound: &dyn Inbound, route: &str, parcel: Parcel, queue: &Queue, bus: &Bus) {
    let Parcel {
        envelope,
        attempt,
        reply,
    } = parcel;
    // The application contains its handlers' panics; one in the application itself (a
    // dead-letter store that panics, say), even while it is handed the message, must not end
    // the consumer or lose the message either.
    if let Some(reply) = reply {
        let name = envelope.name.clone();
        let work = async { inbound.request(route, envelope, Delivery::new(1, 1)).await };
        let answer = AssertUnwindSafe(work)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(target: "catga", message = %name,
                "answering a request panicked outside the application; it gets an error reply");
                let error = crate::Error::from(crate::ErrorKind::Panicked {
                    message: name.to_string(),
                    detail: "answering the request panicked outside the application".to_string(),
                });
                Reply::Err(RemoteFailure::of(&error))
            });
        // The caller may have given up.
        let _ = reply.send(answer);
        return;
    }
    let delivery = Delivery::new(attempt, bus.max_deliveries);
    // As a broker would after a crashed consumer, an event is delivered again.
    let work = async { inbound.event(route, envelope.clone(), delivery).await };
    let settled = AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or(Disposition::Retry);
    match settled {
        Disposition::Ack | Disposition::Terminate => {}
        Disposition::Retry => {
            tokio::time::sleep(options::redelivery_delay(&bus.backoff, attempt)).await;
            queue.push(Parcel {
                envelope,
                attempt: attempt.saturating_add(1),
                reply: None,
            });
        }
    }
}
