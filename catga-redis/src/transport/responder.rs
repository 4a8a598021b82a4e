//! Answering a request on the serving side: the handler's reply (or its failure, typed) goes
//! to the caller's reply list, and the request is acknowledged and deleted in the same
//! transaction. Entries are read, claimed and dispatched by the [worker](super::worker), as
//! events are; this is what it does with a request once handled.

use std::panic::AssertUnwindSafe;

use catga_core::envelope::Envelope;
use catga_core::transport::{RemoteFailure, Reply};
use catga_core::{Error, ErrorKind};
use futures::FutureExt;

use super::retry_delay::RetryDelay;
use super::worker::Worker;
use crate::entry::Entry;
use crate::error::CommandError;
use crate::reply;

impl Worker {
    /// A request: the reply (or the failure, typed) goes to the caller's reply list, and the
    /// request is acknowledged and deleted in the same transaction. If that fails (the
    /// connection is lost), it is tried again for up to the response timeout: the request ran,
    /// and a redelivery could only answer that its outcome is in doubt.
    pub(super) async fn answer(
        &self,
        entry: &Entry,
        route: &str,
        envelope: Envelope,
        reply_to: Option<String>,
        deliveries: u64,
    ) {
        let expired = envelope.expired();
        let name = envelope.name.clone();
        let delivery = self.delivery(deliveries);
        let work = async { self.inbound.request(route, envelope, delivery).await };
        // A panic around the application (not in a handler: those are answered as `panicked`
        // already) must still answer the caller rather than leave it waiting for its timeout.
        let reply = AssertUnwindSafe(work)
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!(target: "catga::redis", message = %name,
                "answering a request panicked outside the application; it gets an error reply");
                let error = Error::from(ErrorKind::Panicked {
                    message: name.to_string(),
                    detail: "answering the request panicked outside the application".to_string(),
                });
                Reply::Err(RemoteFailure::of(&error))
            });
        let mut answer = redis::pipe();
        answer.atomic();
        match &reply_to {
            // A caller past its deadline is not waiting any more.
            Some(_) if expired => {}
            Some(key) if !self.shared.keys.is_reply(key) => {
                tracing::warn!(target: "catga::redis", message = %name, reply_to = %key,
                    "request names a reply key outside this transport's prefix; not answered");
            }
            Some(key) => {
                let ttl =
                    u64::try_from(self.shared.config.reply_ttl.as_millis()).unwrap_or(u64::MAX);
                answer
                    .cmd("RPUSH")
                    .arg(key)
                    .arg(reply::encode(&reply))
                    .ignore();
                answer.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
            }
            None => {
                tracing::warn!(target: "catga::redis", message = %name,
                    "request without a reply key: handled, but nobody can be answered");
            }
        }
        // A request stream is this service's alone, and a request is for one consumer: once
        // answered, nothing needs it any more. (Event streams are shared by every service
        // that handles the event: nothing is ever deleted from them.)
        let mut done = redis::pipe();
        done.atomic();
        done.cmd("XACK")
            .arg(&*entry.stream)
            .arg(&self.group)
            .arg(&entry.id)
            .ignore();
        done.cmd("XDEL").arg(&*entry.stream).arg(&entry.id).ignore();
        // One transaction where the reply list and the stream may meet: always on one
        // server; on a cluster when the list is in the stream's slot, as every reply key of
        // this version is (`Keys::reply`). A list elsewhere (named by another program) is
        // answered first, then the request acknowledged.
        let apart = self.shared.manager.is_cluster()
            && answer.cmd_iter().next().is_some()
            && reply_to.as_deref().is_some_and(|key| {
                crate::connection::key_slot(key.as_bytes())
                    != crate::connection::key_slot(entry.stream.as_bytes())
            });
        let steps = if apart {
            vec![answer, done]
        } else {
            for cmd in done.cmd_iter() {
                answer.add_command(cmd.clone()).ignore();
            }
            vec![answer]
        };
        for step in &steps {
            if !self.send_answer(step, &name, reply_to.as_deref()).await {
                return;
            }
        }
    }

    /// Sends `pipe`, trying again for up to the response timeout; false if it could not.
    async fn send_answer(
        &self,
        pipe: &redis::Pipeline,
        name: &str,
        reply_to: Option<&str>,
    ) -> bool {
        let give_up = tokio::time::Instant::now() + self.shared.config.response_timeout;
        let mut retry = RetryDelay::default();
        loop {
            let sent = self
                .shared
                .bounded(pipe.query_async::<()>(&mut self.shared.manager.clone()))
                .await;
            let Err(e) = sent else {
                return true;
            };
            let error = CommandError::new("RPUSH", reply_to.unwrap_or_default(), e);
            let delay = retry.next_delay();
            if tokio::time::Instant::now() + delay >= give_up {
                tracing::warn!(target: "catga::redis", message = %name,
                    error = &error as &dyn std::error::Error,
                    "could not send the reply; the request stays pending and its next delivery is answered as in doubt (or run again if it is safe to repeat)");
                return false;
            }
            tracing::debug!(target: "catga::redis", message = %name,
                error = &error as &dyn std::error::Error, "could not send the reply; trying again");
            tokio::time::sleep(delay).await;
        }
    }
}
