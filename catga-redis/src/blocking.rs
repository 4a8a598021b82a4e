//! Connections for blocking commands (`BLPOP`, `XREADGROUP … BLOCK`).
//!
//! Redis serves one connection's commands in order, so a command that blocks holds up every
//! command behind it on the same connection. The shared, multiplexed connection therefore
//! never carries one: each blocking call gets a connection of its own, and callers waiting for
//! replies reuse the idle ones kept here.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisResult};

/// Opens a connection whose commands may block: it has no response timeout of its own (the
/// caller bounds the wait, since only it knows how long the command may block).
pub(crate) async fn connect(
    client: &Client,
    connect_timeout: Duration,
) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Names a blocking connection after what it does (`CLIENT SETNAME`, so `CLIENT LIST` shows
/// which instance and task holds it: characters Redis refuses in a name become `_`) and
/// returns its id, by which another connection can interrupt its blocked command. A name
/// the server refuses (an ACL) is only logged.
pub(crate) async fn identify(conn: &mut MultiplexedConnection, name: &str) -> RedisResult<i64> {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if let Err(e) = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(&name)
        .query_async::<()>(conn)
        .await
    {
        tracing::debug!(target: "catga::redis", name, error = &e as &dyn std::error::Error,
            "could not name the connection");
    }
    redis::cmd("CLIENT").arg("ID").query_async(conn).await
}

/// Idle connections for callers waiting on reply lists.
pub(crate) struct BlockingPool {
    client: Client,
    idle: Mutex<Vec<MultiplexedConnection>>,
    max_idle: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for BlockingPool {
    /// Without the client: its `Debug` shows the connection settings, the ACL username
    /// among them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingPool")
            .field("max_idle", &self.max_idle)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl BlockingPool {
    pub fn new(client: Client, max_idle: usize, connect_timeout: Duration) -> Self {
        BlockingPool {
            client,
            idle: Mutex::new(Vec::new()),
            max_idle,
            connect_timeout,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<MultiplexedConnection>> {
        // A panic while holding the lock leaves at worst a connection too many or too few.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle connection, or a new one.
    pub async fn get(&self) -> RedisResult<MultiplexedConnection> {
        let reused = self.idle().pop();
        match reused {
            Some(conn) => Ok(conn),
            None => connect(&self.client, self.connect_timeout).await,
        }
    }

    /// Gives back a connection whose last command completed (one abandoned mid-command may
    /// still deliver that command's reply, so it must be dropped instead).
    pub fn put(&self, conn: MultiplexedConnection) {
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Drops every idle connection (after an error, they may all be dead).
    pub fn clear(&self) {
        self.idle().clear();
    }
}
