//! Consumer groups: a service is a group on each stream it serves, an instance a consumer in
//! it.

use crate::connection::Multiplexed;

use super::positions::Positions;
use crate::config::StartFrom;
use crate::error::CommandError;

/// Creates the group on each stream (and the stream, if there is none yet) unless it exists,
/// and registers the consumer, so a request sent right after `serve` returns finds it.
pub(crate) async fn join(
    manager: &mut Multiplexed,
    streams: &[String],
    group: &str,
    consumer: &str,
    start: StartFrom,
) -> Result<(), CommandError> {
    for stream in streams {
        create(manager, stream, group, start.id()).await?;
        register(manager, stream, group, consumer).await?;
    }
    Ok(())
}

/// Creates the groups that have vanished (a server restarted without persistence, a group
/// or stream deleted by hand) again, each at the last entry this instance saw on its stream
/// (see [`Positions`]), and registers the consumer again. Returns the streams whose group
/// was created, with where it starts.
pub(crate) async fn recreate(
    manager: &mut Multiplexed,
    streams: &[String],
    group: &str,
    consumer: &str,
    positions: &Positions,
) -> Result<Vec<(String, String)>, CommandError> {
    let mut created = Vec::new();
    for stream in streams {
        let start = positions.restart_id(stream);
        if create(manager, stream, group, &start).await? {
            created.push((stream.clone(), start));
        }
        register(manager, stream, group, consumer).await?;
    }
    Ok(created)
}

/// `XGROUP CREATE … MKSTREAM` at `start`; false if the group existed.
async fn create(
    manager: &mut Multiplexed,
    stream: &str,
    group: &str,
    start: &str,
) -> Result<bool, CommandError> {
    let created = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async::<()>(manager)
        .await;
    match created {
        Ok(()) => Ok(true),
        // Another instance, or an earlier run, created it: join it where it is.
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(CommandError::new("XGROUP CREATE", stream, e)),
    }
}

async fn register(
    manager: &mut Multiplexed,
    stream: &str,
    group: &str,
    consumer: &str,
) -> Result<(), CommandError> {
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(stream)
        .arg(group)
        .arg(consumer)
        .query_async::<()>(manager)
        .await
        .map_err(|e| CommandError::new("XGROUP CREATECONSUMER", stream, e))
}

/// Removes the consumer from each group where it has nothing pending, so the group no longer
/// counts it as serving (a request then fails fast once no instance is left). Where entries
/// are still pending it stays, so they are claimed by another instance rather than dropped
/// (deleting a consumer drops its pending entries).
pub(crate) async fn leave(
    manager: &mut Multiplexed,
    streams: &[String],
    group: &str,
    consumer: &str,
) -> Result<(), CommandError> {
    for stream in streams {
        let pending: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(consumer)
            .query_async(manager)
            .await
            .map_err(|e| CommandError::new("XPENDING", stream, e))?;
        if !pending.is_empty() {
            continue;
        }
        redis::cmd("XGROUP")
            .arg("DELCONSUMER")
            .arg(stream)
            .arg(group)
            .arg(consumer)
            .query_async::<()>(manager)
            .await
            .map_err(|e| CommandError::new("XGROUP DELCONSUMER", stream, e))?;
    }
    Ok(())
}
