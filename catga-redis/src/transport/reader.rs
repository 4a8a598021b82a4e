//! The read loop: `XREADGROUP` on a connection of its own, surviving the server going away.
//!
//! Each (re)connection starts with this consumer's own pending entries (id `0`): what it
//! read before the connection broke and has not acknowledged, such as entries whose
//! acknowledgement failed while the server was down. Then it reads new entries (`>`),
//! blocking until some arrive (up to `fetch_wait` per read). Any error drops the connection
//! and starts over after a growing pause ([`RetryDelay`]); a group that has vanished (a server
//! restarted without persistence) is created again after the last entry this instance saw, so
//! nothing added since the restart is skipped.

use std::sync::Arc;

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::groups;
use super::retry_delay::RetryDelay;
use super::worker::Worker;
use crate::blocking::{self, BlockedConn};
use crate::entry::{self, Entry, ShapeError};
use crate::error::CommandError;

/// Why a read session ended.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("no answer to `XREADGROUP` long after its block time; the connection is presumed dead")]
    Stalled,
}

/// Reads `streams` (all of the worker's on a single server; those of one slot on a cluster,
/// where one `XREADGROUP` cannot span slots) until the worker is stopped. `blocked` holds the
/// reading connection while it is connected, for shutdown to interrupt a blocked read.
pub(crate) async fn run(worker: Arc<Worker>, streams: Vec<String>, blocked: Arc<BlockedConn>) {
    let mut retry = RetryDelay::default();
    let mut failed = false;
    while !worker.stop.is_cancelled() {
        let ended = session(&worker, &streams, &blocked, &mut retry, failed).await;
        blocked.disconnected();
        let Err(error) = ended else {
            return;
        };
        // On a cluster the streams' node may have changed (a failover): look it up again.
        failed = true;
        if let ReadError::Command(command) = &error
            && command.is_no_group()
        {
            if let Some(created) = rejoin(&worker, &streams).await {
                retry.reset();
                if created > 0 {
                    // Read again at once: entries added since the server came back wait.
                    continue;
                }
            }
        } else {
            tracing::warn!(target: "catga::redis", group = %worker.group, consumer = %worker.consumer,
                error = &error as &dyn std::error::Error, "reading failed; reconnecting");
        }
        tokio::select! {
            () = tokio::time::sleep(retry.next_delay()) => {}
            () = worker.stop.cancelled() => return,
        }
    }
}

/// Creates the service's vanished consumer groups again, each after the last entry this
/// instance saw on its stream (see [`Positions`](super::positions::Positions)); how many it
/// created (none when another instance was first), or `None` when that failed.
async fn rejoin(worker: &Worker, streams: &[String]) -> Option<usize> {
    let mut manager = worker.shared.manager.clone();
    let recreated = groups::recreate(
        &mut manager,
        streams,
        &worker.group,
        &worker.consumer,
        &worker.positions,
    )
    .await;
    match recreated {
        Ok(created) => {
            for (stream, start) in &created {
                tracing::warn!(target: "catga::redis", stream = %stream, group = %worker.group,
                    start = %start,
                    "the consumer group had vanished (a server restarted without its data, or it was deleted); created it again after the last entry this instance saw");
            }
            Some(created.len())
        }
        Err(e) => {
            tracing::warn!(target: "catga::redis", group = %worker.group,
                error = &e as &dyn std::error::Error,
                "the consumer group has vanished and could not be created again; retrying");
            None
        }
    }
}

async fn session(
    worker: &Arc<Worker>,
    streams: &[String],
    blocked: &BlockedConn,
    retry: &mut RetryDelay,
    fresh: bool,
) -> Result<(), ReadError> {
    let config = &worker.shared.config;
    let first = streams.first().cloned().unwrap_or_default();
    let blocking = &worker.shared.blocking;
    let node = blocking
        .node_for(&first, fresh)
        .await
        .map_err(|e| CommandError::new("CLUSTER SLOTS", &first, e))?;
    let opened = blocking.open(node.as_ref()).await;
    worker.shared.link.saw(&opened);
    let mut conn = opened.map_err(|e| CommandError::new("CONNECT", &first, e))?;
    let name = super::same_name::reader_name(&config.prefix, &worker.group, &worker.consumer);
    let id = blocking::identify(&mut conn, &name)
        .await
        .map_err(|e| CommandError::new("CLIENT ID", &first, e))?;
    blocked.connected(node, id);

    // This consumer's pending entries first, one cursor per stream until each is drained.
    let mut backlog: Vec<(String, String)> = streams
        .iter()
        .map(|s| (s.clone(), "0".to_string()))
        .collect();
    while !backlog.is_empty() {
        let Some(count) = worker.capacity().await else {
            return Ok(());
        };
        let (streams, ids): (Vec<&String>, Vec<&String>) =
            backlog.iter().map(|(s, id)| (s, id)).unzip();
        let reply = read(worker, &mut conn, None, count, &streams, &ids).await?;
        retry.reset();
        let mut drained: Vec<String> = backlog.iter().map(|(s, _)| s.clone()).collect();
        for (stream, entries) in reply {
            let Some(last) = entries.last() else {
                continue;
            };
            if let Some(cursor) = backlog.iter_mut().find(|(s, _)| *s == stream) {
                cursor.1 = last.id.clone();
                drained.retain(|s| *s != stream);
            }
            worker.admit(&stream, entries, true).await;
        }
        backlog.retain(|(s, _)| !drained.contains(s));
    }

    // Then new entries, as they arrive: as many as there are free slots.
    let new = ">".to_string();
    let ids: Vec<&String> = streams.iter().map(|_| &new).collect();
    let streams: Vec<&String> = streams.iter().collect();
    loop {
        let Some(count) = worker.capacity().await else {
            return Ok(());
        };
        let reply = read(
            worker,
            &mut conn,
            Some(config.fetch_wait),
            count,
            &streams,
            &ids,
        )
        .await?;
        retry.reset();
        for (stream, entries) in reply {
            worker.admit(&stream, entries, false).await;
        }
    }
}

/// One `XREADGROUP` of at most `count` entries per stream, blocking for `block` if given.
async fn read(
    worker: &Worker,
    conn: &mut MultiplexedConnection,
    block: Option<std::time::Duration>,
    count: usize,
    streams: &[&String],
    ids: &[&String],
) -> Result<Vec<(String, Vec<Entry>)>, ReadError> {
    let config = &worker.shared.config;
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&worker.group)
        .arg(&worker.consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(block) = block {
        cmd.arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX));
    }
    cmd.arg("STREAMS").arg(streams).arg(ids);
    // The server answers within the block time; far beyond it, the connection is dead
    // without having said so (no reset ever arrived).
    let limit = block
        .unwrap_or_default()
        .saturating_add(config.response_timeout);
    let first = streams.first().map_or("", |s| s.as_str());
    let answered = tokio::time::timeout(limit, cmd.query_async::<Value>(conn)).await;
    let Ok(answered) = answered else {
        worker.shared.link.down("XREADGROUP got no answer in time");
        return Err(ReadError::Stalled);
    };
    worker.shared.link.saw(&answered);
    let value = answered.map_err(|e| CommandError::new("XREADGROUP", first, e))?;
    Ok(entry::read_reply("XREADGROUP", value)?)
}
