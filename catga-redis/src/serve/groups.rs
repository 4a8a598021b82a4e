//! Consumer groups: a service is a group on each stream it serves, an instance a consumer in
//! it.

use redis::aio::ConnectionManager;

use crate::config::StartFrom;
use crate::error::CommandError;

/// Creates the group on each stream (and the stream, if there is none yet) unless it exists,
/// and registers the consumer, so a request sent right after `serve` returns finds it.
pub(crate) async fn join(
    manager: &mut ConnectionManager,
    streams: &[String],
    group: &str,
    consumer: &str,
    start: StartFrom,
) -> Result<(), CommandError> {
    for stream in streams {
        let created = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg(start.id())
            .arg("MKSTREAM")
            .query_async::<()>(manager)
            .await;
        match created {
            Ok(()) => {}
            // Another instance, or an earlier run, created it: join it where it is.
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(CommandError::new("XGROUP CREATE", stream, e)),
        }
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(stream)
            .arg(group)
            .arg(consumer)
            .query_async::<()>(manager)
            .await
            .map_err(|e| CommandError::new("XGROUP CREATECONSUMER", stream, e))?;
    }
    Ok(())
}

/// Removes the consumer from each group where it has nothing pending, so the group no longer
/// counts it as serving (a request then fails fast once no instance is left). Where entries
/// are still pending it stays, so they are claimed by another instance rather than dropped
/// (deleting a consumer drops its pending entries).
pub(crate) async fn leave(
    manager: &mut ConnectionManager,
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
