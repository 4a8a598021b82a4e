//! Taking a failed event again for its next delivery, if it is still this consumer's.
//!
//! After a retryable failure the entry stays pending with this consumer and is taken again
//! after the redelivery delay, its delivery counted (`XCLAIM … RETRYCOUNT`). Meanwhile another
//! instance may have claimed it (this one was cut off for longer than `ack_wait`):
//! then it is theirs. Whether it still is this consumer's cannot be told from its idle time,
//! since the claimer resets that for every entry in flight here; so a script checks the owner
//! and takes it in one step.

use crate::connection::Multiplexed;
use redis::Script;

use crate::error::CommandError;

/// `KEYS[1]` stream, `ARGV` group, consumer, entry id, delivery count: 1 if the entry was
/// this consumer's and now counts that delivery, 0 if it is another's or gone.
const TAKE_AGAIN: &str = r"
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #rows == 0 or rows[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'RETRYCOUNT', ARGV[4], 'JUSTID')
return 1
";

/// The loaded script; one per serving instance (the client loads it again after a restart).
#[derive(Debug)]
pub(crate) struct Redeliver(Script);

impl Redeliver {
    pub fn new() -> Self {
        Redeliver(Script::new(TAKE_AGAIN))
    }

    /// Takes entry `id` of `stream` again for `consumer` of `group`, as its delivery number
    /// `deliveries`; false if it is not this consumer's any more.
    pub async fn take_again(
        &self,
        manager: &mut Multiplexed,
        stream: &str,
        group: &str,
        consumer: &str,
        id: &str,
        deliveries: u64,
    ) -> Result<bool, CommandError> {
        let taken: i64 = self
            .0
            .key(stream)
            .arg(group)
            .arg(consumer)
            .arg(id)
            .arg(deliveries)
            .invoke_async(manager)
            .await
            .map_err(|e| CommandError::new("EVALSHA", stream, e))?;
        Ok(taken == 1)
    }
}
