//! Wake-ups by key over `LISTEN/NOTIFY`: one listening connection per store, shared by every
//! task waiting in it.
//!
//! Writers send `pg_notify(channel, token)` in the statement that changes a key, so the
//! notification goes out when that change commits, to every process listening. A waiter
//! subscribes to its key's token *before* it reads the key's state: a change committed after
//! the read is then heard, and one committed before it is seen by the read. Tokens are short
//! hashes of keys; two keys sharing one only cost a spurious wake-up (the waiter looks again).
//!
//! Notifications are not durable: while the connection is down they are lost. When it is lost
//! every waiter is woken to look again, and waiters poll on their own as a fallback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::PostgresError;

/// How long the listening task rests after an error before it listens again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A channel's waiters, and the connection listening for them once the first one came.
pub(crate) struct Wakeups {
    pool: PgPool,
    channel: String,
    waiters: Arc<Waiters>,
    /// Set once the listening task runs; it is started by the first wait, not at
    /// construction, so a store that never waits holds no connection.
    listening: OnceCell<()>,
    /// The listening task's stop signal.
    stop: CancellationToken,
    /// Cancels `stop` when the store (every clone of it) is dropped, ending the task and
    /// giving its connection back.
    _stopped_on_drop: DropGuard,
}

impl std::fmt::Debug for Wakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeups")
            .field("channel", &self.channel)
            .field("listening", &self.listening.initialized())
            .finish_non_exhaustive()
    }
}

/// Tokens being waited for, each with its `Notify` and how many subscriptions hold it.
#[derive(Default)]
struct Waiters {
    slots: Mutex<HashMap<String, (Arc<Notify>, usize)>>,
}

impl Waiters {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, (Arc<Notify>, usize)>> {
        // Every change under the lock is a single insert, count change or removal.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, token: &str) {
        if let Some((notify, _)) = self.slots().get(token) {
            notify.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for (notify, _) in self.slots().values() {
            notify.notify_waiters();
        }
    }
}

/// A waiter's interest in one token, from subscription until dropped.
pub(crate) struct Subscription {
    token: String,
    notify: Arc<Notify>,
    waiters: Arc<Waiters>,
}

impl Subscription {
    /// Woken by a notification of the token (or a lost connection) from when this
    /// subscription was made: `Notify::notify_waiters` reaches every `Notified` created
    /// before it, polled or not.
    pub(crate) fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut slots = self.waiters.slots();
        if let Some((_, count)) = slots.get_mut(&self.token) {
            *count -= 1;
            if *count == 0 {
                slots.remove(&self.token);
            }
        }
    }
}

impl Wakeups {
    /// Wake-ups on `channel`, listening through a connection of `pool` once needed.
    pub(crate) fn new(pool: PgPool, channel: String) -> Wakeups {
        let stop = CancellationToken::new();
        Wakeups {
            pool,
            channel,
            waiters: Arc::default(),
            listening: OnceCell::new(),
            _stopped_on_drop: stop.clone().drop_guard(),
            stop,
        }
    }

    /// The channel writers notify.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// Subscribes to `token`, starting the listening task first if it does not run yet.
    ///
    /// # Errors
    /// [`PostgresError::Database`] if the listening connection could not be opened; the
    /// subscription is still made (the caller then relies on polling) and returned beside it.
    pub(crate) async fn subscribe(&self, token: String) -> (Subscription, Option<PostgresError>) {
        let started = self.listening.get_or_try_init(|| self.start()).await.err();
        let notify = {
            let mut slots = self.waiters.slots();
            let (notify, count) = slots
                .entry(token.clone())
                .or_insert_with(|| (Arc::new(Notify::new()), 0));
            *count += 1;
            Arc::clone(notify)
        };
        let subscription = Subscription {
            token,
            notify,
            waiters: Arc::clone(&self.waiters),
        };
        (subscription, started)
    }

    /// Opens the listening connection, `LISTEN`s, and spawns the task that wakes waiters.
    async fn start(&self) -> Result<(), PostgresError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(PostgresError::db("idempotency store: listen"))?;
        listener
            .listen(&self.channel)
            .await
            .map_err(PostgresError::db("idempotency store: listen"))?;
        tokio::spawn(listen(
            listener,
            Arc::clone(&self.waiters),
            self.stop.clone(),
        ));
        Ok(())
    }
}

/// The listening task: wakes the waiters of each token notified until cancelled.
async fn listen(mut listener: PgListener, waiters: Arc<Waiters>, stop: CancellationToken) {
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => waiters.wake(notification.payload()),
            Ok(None) => {
                // The connection was lost and is open again: whatever was notified in between
                // is gone, so every waiter looks for itself.
                tracing::warn!(target: "catga", "idempotency store: LISTEN connection lost and reopened; waking every waiter");
                waiters.wake_all();
            }
            Err(sqlx::Error::PoolClosed) => {
                waiters.wake_all();
                return;
            }
            Err(error) => {
                tracing::warn!(target: "catga", error = %error, "idempotency store: LISTEN failed; waiters poll until it is back");
                waiters.wake_all();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}
