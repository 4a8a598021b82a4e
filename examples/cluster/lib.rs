//! Three instances of one service electing a leader over a lease on NATS key-value, Redis or
//! PostgreSQL, the leader firing scheduled messages with its fencing token.
//!
//! * `cluster-node` (`node.rs`) is one instance: it runs a [`Leadership`] on the backend's
//!   lease store, a [`Scheduler`] on the PostgreSQL schedule store, and a fenced heartbeat (a
//!   fenced write every 50 ms while it leads), and prints what happens to it as JSON lines.
//! * [`Cluster`] starts instances as OS processes, reads their lines, and signals them
//!   (`SIGKILL`, `SIGTERM`, `SIGSTOP`, `SIGCONT`): what the failover tests and the
//!   `failover-figures` program drive.
//!
//! [`Leadership`]: catga_core::cluster::Leadership
//! [`Scheduler`]: catga_core::cluster::Scheduler

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use catga_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The scheduled message the nodes fire: its effect is a row of `<schema>.ticks`.
#[event(name = "cluster.tick")]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tick {
    /// Its number.
    pub n: u64,
    /// When it is due, Unix milliseconds: the node reports how late it was applied.
    pub due_ms: u64,
}

/// Where the lease lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `NatsLeaseStore` (JetStream key-value).
    Nats,
    /// `RedisLeaseStore`.
    Redis,
    /// `PostgresLeaseStore`.
    Postgres,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 3] = [Backend::Nats, Backend::Redis, Backend::Postgres];

    /// Its name on the command line and in the environment.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nats => "nats",
            Backend::Redis => "redis",
            Backend::Postgres => "postgres",
        }
    }

    /// The backend named `name`.
    pub fn parse(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// The servers, from the environment (the ones the test suite uses) or the local defaults.
pub fn nats_url() -> String {
    std::env::var("CATGA_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// See [`nats_url`].
pub fn redis_url() -> String {
    std::env::var("CATGA_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// See [`nats_url`].
pub fn postgres_url() -> String {
    std::env::var("CATGA_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// One line a node prints.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// The node's name.
    pub node: String,
    /// `ready`, `leading`, `following`, `fenced` (a fenced write accepted), `rejected` (refused
    /// for a stale token), `handled` (a scheduled message's effect applied), `duplicate` (its
    /// effect was applied before), `released`, `error`.
    pub event: String,
    /// The fencing token the event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// The scheduled message's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// More about an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For `handled`: from the tick's due time to its effect, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_ms: Option<u64>,
}

/// A line, and when the harness read it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it was read.
    pub at: Instant,
    /// The line.
    pub line: Line,
}

/// Instances as OS processes, and every line they printed.
pub struct Cluster {
    nodes: Vec<Child>,
    names: Vec<String>,
    lines: Arc<Mutex<Vec<Seen>>>,
}

impl Cluster {
    /// Starts `count` nodes of `binary` (`cluster-node`) with `env`, named `node-0`…
    ///
    /// # Errors
    /// When a process cannot be started.
    pub fn start(
        binary: &std::path::Path,
        env: &[(String, String)],
        count: usize,
    ) -> std::io::Result<Cluster> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut nodes = Vec::new();
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("node-{i}");
            let mut child = Command::new(binary)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .env("CLUSTER_NODE", &name)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            if let Some(stdout) = child.stdout.take() {
                let lines = Arc::clone(&lines);
                std::thread::spawn(move || {
                    for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if let Ok(line) = serde_json::from_str::<Line>(&text) {
                            lines
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Seen {
                                    at: Instant::now(),
                                    line,
                                });
                        }
                    }
                });
            }
            nodes.push(child);
            names.push(name);
        }
        Ok(Cluster {
            nodes,
            names,
            lines,
        })
    }

    /// The name of node `i`.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Node `i`'s index by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<Seen> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits up to `timeout` for a line `wanted` accepts, read at or after `since`.
    pub fn wait_for(
        &self,
        since: Instant,
        timeout: Duration,
        wanted: impl Fn(&Line) -> bool,
    ) -> Option<Seen> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(seen) = self
                .lines()
                .into_iter()
                .find(|s| s.at >= since && wanted(&s.line))
            {
                return Some(seen);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to `timeout` for a node to lead; its index and token.
    pub fn leader(&self, since: Instant, timeout: Duration) -> Option<(usize, u64)> {
        let seen = self.wait_for(since, timeout, |l| l.event == "leading")?;
        Some((self.index(&seen.line.node)?, seen.line.token?))
    }

    /// Sends `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to node `i`.
    ///
    /// # Errors
    /// When `kill` cannot be run.
    pub fn signal(&self, i: usize, signal: &str) -> std::io::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.nodes[i].id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -{signal} failed")))
        }
    }

    /// Waits up to `timeout` for node `i` to exit.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if matches!(self.nodes[i].try_wait(), Ok(Some(_))) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Cluster {
    /// Every node is stopped by PID (`SIGCONT` first, so a stopped one can die).
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The median and the largest of `values`.
pub fn median_and_max(values: &mut [Duration]) -> (Duration, Duration) {
    values.sort();
    let median = values.get(values.len() / 2).copied().unwrap_or_default();
    let max = values.last().copied().unwrap_or_default();
    (median, max)
}

pub mod scenario;
