//! Serving: consuming a service's streams.
//!
//! Every stream the service serves (one per event it handles, one per command or query) has a
//! consumer group named after the service, and this instance is a consumer in it under a
//! unique name (the configured instance name, or a random one), so the service's instances
//! share each stream's entries. These tasks run per instance:
//! - the [reader] reads new entries (and, on each (re)connection, its own unacknowledged
//!   ones: an instance restarted under the same name resumes them at once), and creates
//!   vanished groups again after the last entry it saw ([positions](super::positions));
//! - the [claimer] takes over entries another instance read and never acknowledged, and the
//!   [reaper](super::reaper) it runs forgets the consumers of instances that are gone;
//! - one handler task per entry, at most `max_in_flight` at a time
//!   ([worker](super::worker)), which acknowledges events through the [acker](super::acker)
//!   and answers requests ([responder](super::responder));
//! - the [observer](super::observe), when the application observes events (cache
//!   invalidation), reads those streams without a group, so every instance sees every one;
//! - the [lag sampler](super::lag) reports how far behind the service's groups are.
//!
//! [`Serving::shutdown`] stops the reader, the observer, the claimer and the sampler, waits
//! for every handler task and then for their acknowledgements to be sent, and then removes
//! this consumer from the groups where it has nothing pending. Once it returns, the instance
//! takes nothing more.

use std::sync::Arc;
use std::time::Duration;

use catga_core::transport::{Inbound, ServePlan, Serving, TransportError};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use super::acker::Acker;
use super::inflight::InFlight;
use super::observe::Observer;
use super::positions::Positions;
use super::redeliver::Redeliver;
use super::worker::{Route, Worker};
use super::{claimer, groups, lag, reader, same_name};
use crate::blocking::BlockedConn;
use std::collections::HashMap;

/// How often shutdown repeats its request to interrupt a blocked read, in case the first
/// arrived just before the read did.
const UNBLOCK_EVERY: Duration = Duration::from_millis(20);

/// Starts serving `plan`; see the [module docs](self).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    plan: ServePlan,
    inbound: Arc<dyn Inbound>,
) -> Result<Serving, TransportError> {
    let routes: HashMap<String, Route> = plan
        .events
        .iter()
        .map(|name| (shared.keys.events(name), false, name))
        .chain(
            plan.requests
                .iter()
                .map(|name| (shared.keys.requests(name), true, name)),
        )
        .map(|(stream, request, name)| {
            let route = Route {
                request,
                name: name.clone(),
            };
            (stream, route)
        })
        .collect();
    let mut streams: Vec<String> = routes.keys().cloned().collect();
    streams.sort();
    if streams.is_empty() && plan.observe.is_empty() {
        return Ok(Serving::new(|| Box::pin(async {})));
    }
    let group = plan.service;
    // A named instance resumes its own pending entries when it restarts (the reader starts
    // with them); a random name leaves them to be claimed by another instance.
    let consumer = match &shared.config.instance {
        Some(name) => name.clone(),
        None => format!("{}-{}", std::process::id(), Uuid::now_v7().simple()),
    };
    let stop = CancellationToken::new();
    // Positioned before `serve` returns: an event published after it is observed. One
    // observer per slot on a cluster, where one `XREAD` cannot span slots.
    let mut observers = Vec::new();
    let observed = by_slot(&shared, plan.observe.clone(), |name| {
        shared.keys.events(name)
    });
    for names in observed {
        let name = format!(
            "catga:{}:{}:{}:observer",
            shared.config.prefix, group, consumer
        );
        observers.push(
            Observer::new(shared.clone(), &names, inbound.clone(), stop.clone(), name).await?,
        );
    }
    if shared.config.instance.is_some() {
        let reader = same_name::reader_name(&shared.config.prefix, &group, &consumer);
        same_name::warn_if_connected(&shared.manager, &reader).await;
    }
    groups::join(
        &mut shared.manager.clone(),
        &streams,
        &group,
        &consumer,
        shared.config.start,
    )
    .await
    .map_err(crate::error::CommandError::into_transport)?;
    tracing::info!(target: "catga::redis", service = %group, consumer = %consumer,
        streams = streams.len(), observed = plan.observe.len(), "serving");

    // Not a transport option: catga-core's plan, whose builder keeps it at least 1; a plan
    // written by hand with 0 would otherwise never start a handler.
    let max_in_flight = plan.max_in_flight.max(1);
    let worker = Arc::new(Worker {
        acker: Acker::spawn(shared.manager.clone(), group.clone()),
        shared,
        group,
        consumer,
        streams,
        routes,
        inbound,
        slots: Arc::new(Semaphore::new(max_in_flight)),
        max_in_flight,
        inflight: InFlight::default(),
        positions: Positions::default(),
        redeliver: Redeliver::new(),
        stop,
    });
    let mut blocked = Vec::new();
    // One reader per slot on a cluster, where one `XREADGROUP` cannot span slots.
    for streams in by_slot(&worker.shared, worker.streams.clone(), String::clone) {
        let conn = Arc::new(BlockedConn::default());
        let reader = tokio::spawn(reader::run(worker.clone(), streams, conn.clone()));
        blocked.push((reader, conn));
    }
    for observer in observers {
        let conn = Arc::new(BlockedConn::default());
        blocked.push((tokio::spawn(observer.run(conn.clone())), conn));
    }
    let mut periodic = Vec::new();
    if !worker.streams.is_empty() {
        periodic.push(tokio::spawn(claimer::run(worker.clone())));
        periodic.push(tokio::spawn(lag::run(worker.clone())));
    }
    Ok(Serving::new(move || {
        Box::pin(shutdown(worker, blocked, periodic))
    }))
}

/// A task blocked in reads on a connection of its own, and that connection.
type Blocked = (JoinHandle<()>, Arc<BlockedConn>);

/// `items` in groups one command may read together: all of them on a single server; those
/// whose key (`key(item)`) is in one slot on a cluster. Empty for no items.
fn by_slot(
    shared: &Shared,
    items: Vec<String>,
    key: impl Fn(&String) -> String,
) -> Vec<Vec<String>> {
    if items.is_empty() {
        return Vec::new();
    }
    if !shared.manager.is_cluster() {
        return vec![items];
    }
    let mut groups: Vec<(u16, Vec<String>)> = Vec::new();
    for item in items {
        let slot = crate::connection::key_slot(key(&item).as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(item),
            None => groups.push((slot, vec![item])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// Stops `worker`, its readers and observers (`blocked`) and its periodic tasks (the claimer
/// and the lag sampler); see the [module docs](self).
async fn shutdown(worker: Arc<Worker>, blocked: Vec<Blocked>, periodic: Vec<JoinHandle<()>>) {
    worker.stop.cancel();
    // A read blocked on the server returns at the end of its block time, or at once when
    // another connection unblocks it; what the reader got is still handled.
    let mut manager = worker.shared.manager.clone();
    for (mut task, conn) in blocked {
        loop {
            if let Some((node, id)) = conn.get() {
                let unblocked = worker
                    .shared
                    .blocking
                    .unblock(&manager, node.as_ref(), id)
                    .await;
                if let Err(e) = unblocked {
                    tracing::debug!(target: "catga::redis", error = &e as &dyn std::error::Error,
                        "could not interrupt the blocked read; waiting for its block time");
                }
            }
            tokio::select! {
                _ = &mut task => break,
                () = tokio::time::sleep(UNBLOCK_EVERY) => {}
            }
        }
    }
    for task in periodic {
        let _ = task.await;
    }
    // Every slot back means no handler task is left.
    let all = u32::try_from(worker.max_in_flight).unwrap_or(u32::MAX);
    let _ = worker.slots.acquire_many(all).await;
    worker.acker.flush().await;
    if let Err(error) = groups::leave(
        &mut manager,
        &worker.streams,
        &worker.group,
        &worker.consumer,
    )
    .await
    {
        tracing::debug!(target: "catga::redis", error = &error as &dyn std::error::Error,
            "could not remove the consumer from its groups");
    }
    tracing::info!(target: "catga::redis", service = %worker.group, consumer = %worker.consumer,
        "stopped serving");
}
