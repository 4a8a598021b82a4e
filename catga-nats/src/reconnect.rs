//! Noticing reconnections.
//!
//! A pull request lives on the server: when the server restarts it is gone, and a consumer
//! waiting on it would sit idle until its local timer ran out. The server may also have lost
//! its state, or the client may have dropped the connection over a message it could not read,
//! and a broadcast subscription may have missed events meanwhile. The client reports each
//! (re)connection; consumers and observers watch the count and act at once.

use std::sync::Arc;

use async_nats::Event;
use tokio::sync::watch;

/// Counts the client's connections.
#[derive(Clone, Debug)]
pub(crate) struct Reconnects {
    count: Arc<watch::Sender<u64>>,
}

impl Reconnects {
    pub fn new() -> Self {
        Reconnects {
            count: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The client's event callback: counts connections, logs the rest.
    pub fn callback(&self) -> impl Fn(Event) -> std::future::Ready<()> + Send + Sync + 'static {
        let count = self.count.clone();
        move |event| {
            match &event {
                Event::Connected => {
                    tracing::info!(target: "catga::nats", "connected to NATS");
                    count.send_modify(|n| *n += 1);
                }
                Event::Disconnected => {
                    tracing::warn!(target: "catga::nats", "disconnected from NATS; reconnecting");
                }
                other => tracing::debug!(target: "catga::nats", event = %other, "NATS event"),
            }
            std::future::ready(())
        }
    }

    /// A watcher that sees the connections made from now on.
    pub fn watch(&self) -> Watch {
        let mut receiver = self.count.subscribe();
        receiver.mark_unchanged();
        Watch { receiver }
    }
}

/// Sees reconnections as they happen.
#[derive(Debug)]
pub(crate) struct Watch {
    receiver: watch::Receiver<u64>,
}

impl Watch {
    /// Whether the client (re)connected since the last look; forgets it.
    pub fn take_reconnection(&mut self) -> bool {
        let changed = self.receiver.has_changed().unwrap_or(false);
        self.receiver.mark_unchanged();
        changed
    }

    /// Resolves on the next (re)connection (at once if one happened since the last look);
    /// never, if the client is gone.
    pub async fn reconnected(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
