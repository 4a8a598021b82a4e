//! Requests: the caller's side. The request goes onto the request stream of its wire name,
//! carrying the key of a fresh reply list; the caller then waits on that list (`BLPOP`) for
//! as long as it is willing to wait. The serving side pushes the reply there (see
//! `serve::worker`).
//!
//! What a failure tells the caller: `NoResponders` (nobody serves the stream) and
//! `Unreachable` (the connection was refused) mean the request was not added, so sending it
//! again is safe. Everything else leaves it in doubt, because it may be handled: a connection
//! lost or timed out while the script ran (`Broker`), any failure while waiting for the
//! reply (`Broker`), no reply in time (`Timeout`), a reply that is not one (`Protocol`), a
//! failure reply that cannot be read (`UnreadableReply`).

use std::time::Duration;

use catga_core::envelope::Envelope;
use catga_core::transport::{Reply, TransportError};
use redis::{Script, Value};

use super::Shared;
use crate::entry::each_field;
use crate::error::CommandError;
use crate::keys::REPLY_TO_FIELD;
use crate::reply;

/// Adds the request only if some consumer group on its stream has a consumer, in one step,
/// so a request nobody serves fails at once instead of waiting out its timeout, and leaves no
/// entry behind. Returns false (nil) when nobody serves it.
const ADD_IF_SERVED: &str = r"
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return false end
local consumers = 0
for _, group in ipairs(groups) do
  for i = 1, #group, 2 do
    if group[i] == 'consumers' then consumers = consumers + group[i + 1] end
  end
end
if consumers == 0 then return false end
if ARGV[1] == '' then
  return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 2))
";

/// The script, loaded once per server (the client reloads it after a restart).
#[derive(Debug)]
pub(crate) struct RequestScript(Script);

impl RequestScript {
    pub fn new() -> Self {
        RequestScript(Script::new(ADD_IF_SERVED))
    }
}

/// Extra time the caller's own timer allows beyond the server-side `BLPOP` timeout, so the
/// server's answer (nil on timeout) normally arrives first and the connection can be reused.
const GRACE: Duration = Duration::from_secs(1);

impl Shared {
    pub(crate) async fn request(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Reply, TransportError> {
        self.check_size(&envelope)?;
        let stream = self.keys.requests(&envelope.name);
        let reply_key = self.keys.reply(&stream);

        let mut invocation = self.request_script.0.key(&stream);
        invocation.arg(self.config.max_len.map_or(String::new(), |n| n.to_string()));
        each_field(&envelope, |name, value| {
            invocation.arg(name).arg(value);
        });
        invocation.arg(REPLY_TO_FIELD).arg(&reply_key);
        let mut manager = self.manager.clone();
        // Unreachable only when the connection was refused: a connection lost or a time-out
        // after the script was sent may have added the request (in doubt).
        let added: Value = self
            .bounded(invocation.invoke_async(&mut manager))
            .await
            .map_err(|e| CommandError::new("EVALSHA", stream.clone(), e).into_transport())?;
        if matches!(added, Value::Nil | Value::Boolean(false)) {
            return Err(TransportError::NoResponders(envelope.name.into_owned()));
        }
        self.await_reply(&reply_key, timeout).await
    }

    async fn await_reply(&self, key: &str, timeout: Duration) -> Result<Reply, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // A pooled connection may have died with a server restart, or (on a cluster) a
        // failover moved the list to another node; the reply list outlives it, so waiting
        // again on a fresh connection (to the node owning the list now) loses nothing.
        let mut retried = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.pop(key, left, retried).await {
                Err(error) if (error.is_connection() || error.is_moved()) && !retried => {
                    self.blocking.clear();
                    retried = true;
                }
                // The request is on its stream: whatever failed here, it may be handled.
                Err(error) => return Err(error.into_transport_after_send()),
                Ok(None) => return Err(TransportError::Timeout(timeout)),
                Ok(Some(frame)) => return reply::decode(key, &frame),
            }
        }
    }

    /// One `BLPOP` of the reply list for up to `wait`, on a connection to the node owning it
    /// (the slot map asked for again when `fresh`): the reply, or `None` when none came.
    async fn pop(
        &self,
        key: &str,
        wait: Duration,
        fresh: bool,
    ) -> Result<Option<Vec<u8>>, CommandError> {
        let node = self
            .blocking
            .node_for(key, fresh)
            .await
            .map_err(|e| CommandError::new("BLPOP", key, e))?;
        let mut conn = self
            .blocking
            .get(node.as_ref())
            .await
            .map_err(|e| CommandError::new("BLPOP", key, e))?;
        // BLPOP takes seconds with decimals; 0 would mean forever, so never round to it.
        let seconds = format!("{:.3}", wait.as_secs_f64().max(0.001));
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(key).arg(seconds);
        let popped = tokio::time::timeout(
            wait.saturating_add(GRACE),
            blpop.query_async::<Option<(Vec<u8>, Vec<u8>)>>(&mut conn),
        )
        .await;
        match popped {
            // Abandoned mid-command: the connection is dropped, not reused.
            Err(_) => Ok(None),
            Ok(Err(e)) => Err(CommandError::new("BLPOP", key, e)),
            Ok(Ok(popped)) => {
                self.blocking.put(node, conn);
                Ok(popped.map(|(_, frame)| frame))
            }
        }
    }
}
