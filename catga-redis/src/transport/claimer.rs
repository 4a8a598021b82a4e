//! The claimer: takes over entries left unacknowledged for longer than `ack_wait`,
//! typically read by an instance that died before acknowledging them (`XAUTOCLAIM`), keeps
//! the entries this instance is still handling from looking abandoned, and has the [reaper]
//! forget the consumers of instances that are gone.
//!
//! [reaper]: super::reaper

use std::sync::Arc;

use super::reaper::Reaper;
use super::worker::Worker;
use crate::entry;
use crate::error::CommandError;

/// The most `XAUTOCLAIM` rounds per stream per tick, so one huge pending list cannot keep
/// the claimer from the other streams.
const MAX_ROUNDS: usize = 16;

/// Claims, then forgets dead consumers, every claim interval until the worker is stopped.
pub(crate) async fn run(worker: Arc<Worker>) {
    let config = &worker.shared.config;
    let reaper = Reaper::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.claim_interval()) => {}
            () = worker.stop.cancelled() => return,
        }
        touch(&worker).await;
        for stream in &worker.streams {
            if worker.stop.is_cancelled() {
                return;
            }
            if let Err(error) = claim(&worker, stream).await {
                tracing::debug!(target: "catga::redis", stream = %stream,
                    error = &error as &dyn std::error::Error, "claiming failed; trying next time");
            }
            // After claiming: a dead consumer whose last entries were just claimed away can
            // go in the same cycle.
            forget(&worker, &reaper, stream).await;
        }
    }
}

/// Forgets the consumers of `stream`'s group whose instances are gone.
async fn forget(worker: &Worker, reaper: &Reaper, stream: &str) {
    let forgotten = reaper
        .reap(
            &mut worker.shared.manager.clone(),
            stream,
            &worker.group,
            &worker.consumer,
            worker.shared.config.forget_idle,
        )
        .await;
    match forgotten {
        Ok(names) if names.is_empty() => {}
        Ok(names) => {
            tracing::info!(target: "catga::redis", stream, group = %worker.group,
                forgotten = names.len(), consumers = ?names,
                "forgot idle consumers of instances that are gone");
        }
        Err(error) => {
            tracing::debug!(target: "catga::redis", stream,
                error = &error as &dyn std::error::Error,
                "forgetting idle consumers failed; trying next time");
        }
    }
}

/// Resets the idle time of entries in flight here (handled, or waiting for a slot) for a
/// quarter of `ack_wait`, so another instance does not take them over meanwhile
/// (`XCLAIM … JUSTID` to this consumer, which does not count as a delivery). A cycle comes
/// every quarter of `ack_wait` plus the time the cycle takes, so an entry is touched well
/// before it could be claimed. Only entries idle for an eighth of `ack_wait` are touched:
/// one another instance claimed a moment ago (this one was cut off for longer than the claim
/// time) stays theirs.
async fn touch(worker: &Worker) {
    let ack_wait = worker.shared.config.ack_wait;
    let old = worker.inflight.older_than(ack_wait / 4);
    let min_idle = u64::try_from((ack_wait / 8).as_millis()).unwrap_or(u64::MAX);
    for (stream, ids) in old {
        let touched = redis::cmd("XCLAIM")
            .arg(&*stream)
            .arg(&worker.group)
            .arg(&worker.consumer)
            .arg(min_idle)
            .arg(&ids)
            .arg("JUSTID")
            .query_async::<()>(&mut worker.shared.manager.clone())
            .await;
        if let Err(e) = touched {
            let error = CommandError::new("XCLAIM", &*stream, e);
            tracing::debug!(target: "catga::redis", error = &error as &dyn std::error::Error,
                "could not reset the idle time of entries in flight");
        }
    }
}

/// Claims the idle entries of one stream and hands them to handlers.
async fn claim(worker: &Arc<Worker>, stream: &str) -> Result<(), CommandError> {
    let config = &worker.shared.config;
    let min_idle = u64::try_from(config.ack_wait.as_millis()).unwrap_or(u64::MAX);
    let mut cursor = "0-0".to_string();
    for _ in 0..MAX_ROUNDS {
        let reply = redis::cmd("XAUTOCLAIM")
            .arg(stream)
            .arg(&worker.group)
            .arg(&worker.consumer)
            .arg(min_idle)
            .arg(&cursor)
            .arg("COUNT")
            // As many as there are free slots (at least one, so a busy service still
            // recovers a dead instance's entries), at most a batch.
            .arg(worker.slots.available_permits().clamp(1, config.batch))
            .query_async::<redis::Value>(&mut worker.shared.manager.clone())
            .await
            .map_err(|e| CommandError::new("XAUTOCLAIM", stream, e))?;
        let (next, claimed) = match entry::autoclaim_reply(stream, reply) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(target: "catga::redis", error = &error as &dyn std::error::Error,
                    "unreadable XAUTOCLAIM reply");
                return Ok(());
            }
        };
        if !claimed.is_empty() {
            tracing::info!(target: "catga::redis", stream, entries = claimed.len(),
                consumer = %worker.consumer, "claimed idle entries");
            worker.admit(stream, claimed, true).await;
        }
        if next == "0-0" || worker.stop.is_cancelled() {
            break;
        }
        cursor = next;
    }
    Ok(())
}
