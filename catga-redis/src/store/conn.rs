//! The connection every store of one [`RedisStores`](super::RedisStores) shares, and the key
//! layout.

use std::sync::Arc;

use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, Script, ScriptInvocation, Value,
};

use super::error::RedisStoreError;
use super::read_from::{ReadAt, ReadFrom, Routing};
use crate::connection::Multiplexed;

/// One multiplexed connection that reconnects by itself, to the primary or to a Redis
/// Cluster (where each command goes to the node owning its key), the replicas reads may go
/// to, and the key prefix.
#[derive(Clone)]
pub(crate) struct StoreConn {
    manager: Multiplexed,
    routing: Arc<Routing>,
    prefix: Arc<str>,
    /// The client of the primary (of one node, on a cluster, where a `PUBLISH` reaches the
    /// subscribers of every node), for a store that needs a connection of its own (the
    /// idempotency store's pub/sub subscriber); `None` when the maker had none to give.
    client: Option<redis::Client>,
}

impl StoreConn {
    /// Everything on the primary (on a cluster, on each key's primary).
    pub(crate) fn new(manager: impl Into<Multiplexed>, prefix: &str) -> StoreConn {
        StoreConn::routed(manager, Arc::new(Routing::primary_only()), prefix)
    }

    /// Reads routed by `routing` (whose replicas its own task keeps up to date).
    pub(crate) fn routed(
        manager: impl Into<Multiplexed>,
        routing: Arc<Routing>,
        prefix: &str,
    ) -> StoreConn {
        StoreConn {
            manager: manager.into(),
            routing,
            prefix: prefix.into(),
            client: None,
        }
    }

    /// The same, with the client of the primary: a store that needs a connection of its own
    /// (the idempotency store's pub/sub subscriber) opens it from this.
    pub(crate) fn with_client(mut self, client: redis::Client) -> StoreConn {
        self.client = Some(client);
        self
    }

    /// The client of the primary, if it was given.
    pub(crate) fn client(&self) -> Option<&redis::Client> {
        self.client.as_ref()
    }

    /// Whether `other` is this connection (a clone of it): stores of one
    /// [`RedisStores`](super::RedisStores).
    pub(crate) fn same_connection(&self, other: &StoreConn) -> bool {
        Arc::ptr_eq(&self.routing, &other.routing)
    }

    /// Whether this is a Redis Cluster connection: a script's keys must share a slot.
    pub(crate) fn is_cluster(&self) -> bool {
        self.manager.is_cluster()
    }

    /// Where reads go.
    pub(crate) fn read_from(&self) -> ReadFrom {
        self.routing.read_from
    }

    /// The key prefix, e.g. `shop`.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The hash tag of a store family, `{shop:events}`: keys that start with it live in one
    /// Redis Cluster slot, so a script may touch any of them.
    pub(crate) fn tag(&self, family: &str) -> String {
        format!("{{{}:{family}}}", self.prefix)
    }

    /// Runs one command on the primary; `key` is the key it works on (for the error, and so
    /// that reads of it that follow go to the primary).
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T, RedisStoreError> {
        self.routing.wrote(key);
        let mut conn = self.manager.clone();
        cmd.query_async(&mut conn)
            .await
            .map_err(RedisStoreError::command(operation, key))
    }

    /// Runs one command that only reads `key`: on a replica when [`ReadFrom`] allows it and
    /// this process did not write `key` within the read-your-writes window, else on the
    /// primary. Use it only for reads whose caller accepts a value a little behind the
    /// primary. With `PreferReplica`, a replica that fails is left out for a while and the
    /// read is made on the primary. With `Replica` and no replica known, it fails with an
    /// I/O error (retryable: a replica may be found again).
    pub(crate) async fn run_read<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        cmd: &Cmd,
    ) -> Result<T, RedisStoreError> {
        let replica = match self.routing.replica_for(key) {
            ReadAt::Replica(replica) => replica,
            ReadAt::Primary => {
                let mut conn = self.manager.clone();
                return cmd
                    .query_async(&mut conn)
                    .await
                    .map_err(RedisStoreError::command(operation, key));
            }
            ReadAt::NoReplica => {
                let none = std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "no replica to read from (`ReadFrom::Replica`): none is known now; \
                     replicas are looked for again every `REPLICA_REFRESH`",
                );
                return Err(RedisStoreError::command(operation, key)(none.into()));
            }
        };
        let mut conn = replica.manager.clone();
        match cmd.query_async(&mut conn).await {
            Ok(value) => Ok(value),
            Err(error) => {
                let unreachable = error.is_io_error()
                    || error.is_timeout()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || matches!(error.code(), Some("LOADING" | "MASTERDOWN"));
                if !unreachable || self.routing.read_from == ReadFrom::Replica {
                    return Err(RedisStoreError::command(operation, key)(error));
                }
                replica.mark_down();
                tracing::warn!(target: "catga::redis", replica = %replica.addr, error = %error,
                    "redis store: a replica failed a read; reading from the primary, and leaving the replica out for a while");
                let mut conn = self.manager.clone();
                cmd.query_async(&mut conn)
                    .await
                    .map_err(RedisStoreError::command(operation, key))
            }
        }
    }

    /// Sends a pipeline in one write and reads every reply: one round trip.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        pipe: &Pipeline,
    ) -> Result<T, RedisStoreError> {
        self.routing.wrote(key);
        let mut conn = self.manager.clone();
        pipe.query_async(&mut conn)
            .await
            .map_err(RedisStoreError::command(operation, key))
    }

    /// Runs a script by its digest (`EVALSHA`); on `NOSCRIPT` the client loads it and calls
    /// it again.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisStoreError> {
        self.routing.wrote(key);
        let mut conn = self.manager.clone();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(RedisStoreError::command(operation, key))
    }

    /// Runs `calls`, each a call of `script`, in one pipeline: one round trip, each call's
    /// own outcome (its reply, or the server's error for it). Calls the server answered
    /// `NOSCRIPT` (a restart without data, a `SCRIPT FLUSH`, a failover) are sent again after
    /// a `SCRIPT LOAD`, in one more pipeline: one more round trip, only then. A call is never
    /// sent twice once the server ran it.
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] when the connection failed (then which calls ran is not
    /// known) or the script could not be loaded.
    ///
    /// On a cluster a pipeline stays in one slot: the calls are sent as one pipeline per slot,
    /// all at once, so the batch still takes one round trip's time.
    pub(crate) async fn invoke_many(
        &self,
        operation: &'static str,
        key: &str,
        script: &Script,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<RedisResult<Value>>, RedisStoreError> {
        if !self.manager.is_cluster() {
            let calls: Vec<&ScriptInvocation<'_>> = calls.iter().collect();
            return self.invoke_pipelined(operation, key, script, &calls).await;
        }
        let groups = by_slot(calls);
        let sent = groups.iter().map(|(_, group)| {
            let group: Vec<&ScriptInvocation<'_>> = group.iter().map(|&i| &calls[i]).collect();
            async move { self.invoke_pipelined(operation, key, script, &group).await }
        });
        let answered = futures::future::join_all(sent).await;
        let mut replies: Vec<Option<RedisResult<Value>>> = (0..calls.len()).map(|_| None).collect();
        for ((_, group), answer) in groups.iter().zip(answered) {
            for (&i, reply) in group.iter().zip(answer?) {
                replies[i] = Some(reply);
            }
        }
        Ok(replies
            .into_iter()
            .map(|reply| {
                reply.unwrap_or_else(|| {
                    Err(redis::RedisError::from((
                        ErrorKind::Client,
                        "the server sent no reply for this call",
                    )))
                })
            })
            .collect())
    }

    /// [`invoke_many`](Self::invoke_many) for calls that may share one pipeline.
    async fn invoke_pipelined(
        &self,
        operation: &'static str,
        key: &str,
        script: &Script,
        calls: &[&ScriptInvocation<'_>],
    ) -> Result<Vec<RedisResult<Value>>, RedisStoreError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for call in calls {
            pipe.invoke_script(call);
        }
        let mut replies: Vec<RedisResult<Value>> = self.pipe(operation, key, &pipe).await?;
        let no_script = ErrorKind::Server(redis::ServerErrorKind::NoScript);
        let unknown = |reply: &RedisResult<Value>| matches!(reply, Err(e) if e.kind() == no_script);
        let again: Vec<usize> = (0..replies.len())
            .filter(|&i| unknown(&replies[i]))
            .collect();
        if again.is_empty() {
            return Ok(replies);
        }
        let mut retry = redis::pipe();
        retry.ignore_errors();
        retry.load_script(script);
        for &i in &again {
            if let Some(&call) = calls.get(i) {
                retry.invoke_script(call);
            }
        }
        let mut retried: Vec<RedisResult<Value>> = self.pipe(operation, key, &retry).await?;
        if !retried.is_empty() {
            retried
                .remove(0)
                .map_err(RedisStoreError::command(operation, key))?;
        }
        for (i, reply) in again.into_iter().zip(retried) {
            if let Some(slot) = replies.get_mut(i) {
                *slot = reply;
            }
        }
        Ok(replies)
    }

    /// Loads `scripts` into the server's script cache in one pipeline (one round trip), so
    /// that no later call meets `NOSCRIPT`.
    ///
    /// # Errors
    /// [`RedisStoreError::Command`] when the server could not be reached or refused a script.
    ///
    /// On a cluster each script is loaded into every node, one `SCRIPT LOAD` per script, all
    /// at once.
    pub(crate) async fn load_scripts(
        &self,
        operation: &'static str,
        scripts: &[&Script],
    ) -> Result<(), RedisStoreError> {
        if self.manager.is_cluster() {
            // `SCRIPT LOAD` alone goes to every node; in a pipeline it would reach one.
            let loads = scripts.iter().map(|script| {
                let mut conn = self.manager.clone();
                async move { script.prepare_invoke().load_async(&mut conn).await }
            });
            for loaded in futures::future::join_all(loads).await {
                loaded.map_err(RedisStoreError::command(operation, self.prefix()))?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for script in scripts {
            pipe.load_script(script);
        }
        let _: Vec<String> = self.pipe(operation, self.prefix(), &pipe).await?;
        Ok(())
    }
}

/// The indexes of `calls` grouped by the slot of each call's first key, in order of first
/// appearance (calls without a key share a group).
fn by_slot(calls: &[ScriptInvocation<'_>]) -> Vec<(Option<u16>, Vec<usize>)> {
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let mut one = redis::pipe();
        one.invoke_script(call);
        let slot = one
            .cmd_iter()
            .next()
            .and_then(crate::connection::slot_of_command);
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    groups
}
