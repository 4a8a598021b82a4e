//! The reaper: forgets the consumers of instances that are gone.
//!
//! An instance that dies without shutting down leaves its consumer in each group it served.
//! Besides the clutter, a request counts consumers to know whether anyone serves its stream,
//! so a dead consumer makes it wait out its timeout instead of failing at once. A consumer
//! idle for longer than the forget idle time with nothing pending is removed
//! (`XGROUP DELCONSUMER`). One with entries pending is kept, since deleting a consumer drops
//! its pending entries: the claimer moves them to a live instance after `ack_wait`,
//! and the consumer is forgotten on a later cycle.

use std::time::Duration;

use crate::connection::Multiplexed;
use redis::Script;

use crate::error::CommandError;

/// Deletes every consumer of group `ARGV[1]` on stream `KEYS[1]` other than `ARGV[2]` (this
/// instance) with nothing pending and idle for more than `ARGV[3]` milliseconds, and returns
/// their names. A script, so that checking and deleting are one step: a consumer cannot gain
/// pending entries (and lose them to the delete) in between.
///
/// `XINFO CONSUMERS` answers each consumer as a flat list of fields (scripts see RESP2), read
/// by name: Redis 7.2 added `inactive`, and later versions may add more. `idle` is the time
/// since the consumer's last attempted interaction, which a live instance's blocking read
/// renews even when nothing arrives; `inactive` (the last successful one) is not, so it is
/// not used.
const FORGET_IDLE: &str = r"
local forgotten = {}
local limit = tonumber(ARGV[3])
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending, idle
  for i = 1, #consumer, 2 do
    local field = consumer[i]
    if field == 'name' then name = consumer[i + 1]
    elseif field == 'pending' then pending = consumer[i + 1]
    elseif field == 'idle' then idle = consumer[i + 1]
    end
  end
  if name and name ~= ARGV[2] and pending == 0 and idle and idle > limit then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    forgotten[#forgotten + 1] = name
  end
end
return forgotten
";

/// The loaded script; one per serving instance (the client loads it again after a restart).
#[derive(Debug)]
pub(crate) struct Reaper(Script);

impl Reaper {
    pub fn new() -> Self {
        Reaper(Script::new(FORGET_IDLE))
    }

    /// Forgets the dead consumers of `group` on `stream`, all but `consumer` (this instance's),
    /// and returns the names of those forgotten.
    pub async fn reap(
        &self,
        manager: &mut Multiplexed,
        stream: &str,
        group: &str,
        consumer: &str,
        idle: Duration,
    ) -> Result<Vec<String>, CommandError> {
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let names: Vec<Vec<u8>> = self
            .0
            .key(stream)
            .arg(group)
            .arg(consumer)
            .arg(idle)
            .invoke_async(manager)
            .await
            .map_err(|e| CommandError::new("EVALSHA", stream, e))?;
        // Consumer names are binary-safe; others may have been named by anything.
        Ok(names
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }
}
