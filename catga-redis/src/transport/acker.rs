//! Acknowledging handled events, many per round trip.
//!
//! Handlers finish one by one, but around the same time; sending each `XACK` alone would cost
//! a command per entry, and waiting for it would hold the handler's slot for a round trip.
//! Instead a finished handler queues its acknowledgement here and frees its slot; one task
//! sends whatever has queued since its last round trip as one `XACK` per stream. Shutdown
//! [flushes](Acker::flush) the queue after the last handler finished, so it returns with
//! everything acknowledged (or, if the server was away, logged and left pending for
//! redelivery). On a Redis Cluster a pipeline stays in one slot: the acknowledgements go as
//! one pipeline per slot, sent at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::connection::Multiplexed;
use tokio::sync::{mpsc, oneshot};

use crate::error::CommandError;

/// The most acknowledgements sent in one round trip.
const MAX_BATCH: usize = 1024;

#[derive(Debug)]
enum Message {
    Ack {
        stream: Arc<str>,
        id: String,
    },
    /// Answered once everything queued before it was sent.
    Flush(oneshot::Sender<()>),
}

/// The handle handler tasks acknowledge through; the task stops when every handle is gone.
#[derive(Clone, Debug)]
pub(crate) struct Acker {
    queue: mpsc::UnboundedSender<Message>,
}

impl Acker {
    /// Starts the acknowledging task for consumer group `group`.
    pub fn spawn(manager: Multiplexed, group: String) -> Acker {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, manager, group));
        Acker { queue }
    }

    /// Queues the acknowledgement of an entry. If it cannot be sent, the failure is logged
    /// and the entry stays pending, to be delivered again.
    pub fn ack(&self, stream: Arc<str>, id: String) {
        // The task runs while any handle exists: sending fails only if it panicked.
        let _ = self.queue.send(Message::Ack { stream, id });
    }

    /// Waits until every acknowledgement queued so far was sent.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Message>, manager: Multiplexed, group: String) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut by_stream: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut flushes = Vec::new();
        let mut entries = 0;
        for message in &batch {
            match message {
                Message::Ack { stream, id } => {
                    by_stream.entry(stream).or_default().push(id);
                    entries += 1;
                }
                Message::Flush(_) => {}
            }
        }
        // One pipeline on a single server; one per slot on a cluster.
        let mut pipes: Vec<(Option<u16>, &str, redis::Pipeline)> = Vec::new();
        for (stream, ids) in &by_stream {
            let slot = manager
                .is_cluster()
                .then(|| crate::connection::key_slot(stream.as_bytes()));
            let at = match pipes.iter().position(|(s, _, _)| *s == slot) {
                Some(at) => at,
                None => {
                    pipes.push((slot, stream, redis::pipe()));
                    pipes.len() - 1
                }
            };
            pipes[at]
                .2
                .cmd("XACK")
                .arg(*stream)
                .arg(&group)
                .arg(ids)
                .ignore();
        }
        let sent = pipes.iter().map(|(_, stream, pipe)| {
            let mut manager = manager.clone();
            async move { (*stream, pipe.query_async::<()>(&mut manager).await) }
        });
        for (stream, result) in futures::future::join_all(sent).await {
            if let Err(e) = result {
                let error = CommandError::new("XACK", stream, e);
                tracing::warn!(target: "catga::redis", group = %group, entries,
                    error = &error as &dyn std::error::Error,
                    "could not acknowledge; the entries will be delivered again");
            }
        }
        drop(by_stream);
        for message in batch {
            if let Message::Flush(done) = message {
                flushes.push(done);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
