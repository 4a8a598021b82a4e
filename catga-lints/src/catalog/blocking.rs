//! Blocking calls inside async handlers.

use super::{Allow, Family, Level, Rule, Surface};

const HERE_AND_CLI: &[Surface] = &[Surface::Expansion, Surface::Cli];

const WHY: &str = "A handler runs on the async runtime's worker threads. A blocking call parks the \
                   thread, and every other task scheduled on it (other dispatches, timers, I/O) \
                   waits too.";

/// CATGA020.
pub static BLOCKING_SLEEP: Rule = Rule {
    id: "CATGA020",
    name: "blocking_sleep",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "`std::thread::sleep` blocks the runtime thread",
    help: "write `tokio::time::sleep(duration).await`",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "std::thread::sleep(Duration::from_millis(50));",
    good: "tokio::time::sleep(Duration::from_millis(50)).await;",
};

/// CATGA021.
pub static BLOCKING_FS: Rule = Rule {
    id: "CATGA021",
    name: "blocking_fs",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "`std::fs` blocks the runtime thread",
    help: "use `tokio::fs` (and `.await` it), or move the work into `tokio::task::spawn_blocking`",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let text = std::fs::read_to_string(&path)?;",
    good: "let text = tokio::fs::read_to_string(&path).await?;",
};

/// CATGA022.
pub static BLOCKING_NET: Rule = Rule {
    id: "CATGA022",
    name: "blocking_net",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "`std::net` I/O blocks the runtime thread",
    help: "use `tokio::net` (and `.await` it)",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let stream = std::net::TcpStream::connect(addr)?;",
    good: "let stream = tokio::net::TcpStream::connect(addr).await?;",
};

/// CATGA023.
pub static BLOCKING_HTTP: Rule = Rule {
    id: "CATGA023",
    name: "blocking_http",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "a blocking HTTP client blocks the runtime thread",
    help: "use the async client (`reqwest::Client`) and `.await` it",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let body = reqwest::blocking::get(url)?.text()?;",
    good: "let body = reqwest::get(url).await?.text().await?;",
};

/// CATGA024.
pub static BLOCK_ON: Rule = Rule {
    id: "CATGA024",
    name: "block_on_in_handler",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "`block_on` inside an async handler blocks the runtime thread (and panics on Tokio's)",
    help: "`.await` the future instead",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let rows = futures::executor::block_on(db.load(id));",
    good: "let rows = db.load(id).await;",
};

/// CATGA025.
pub static SYNC_LOCK_ACROSS_AWAIT: Rule = Rule {
    id: "CATGA025",
    name: "sync_lock_across_await",
    level: Level::Warning,
    family: Family::Blocking,
    summary: "a `std::sync` lock guard is held across an `.await`",
    help: "end the guard's block before the `.await`: `let n = { let guard = m.lock()?; guard.len() };` \
           (a `drop(guard)` may still leave the future not `Send`), or use `tokio::sync::Mutex`",
    rationale: "While the task is suspended the lock stays held: every other dispatch that needs it \
                blocks its thread, and the handler's future is not `Send`.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let mut orders = self.orders.lock()?;\nself.audit.record(id).await;\norders.insert(id, order);",
    good: "self.audit.record(id).await;\nself.orders.lock()?.insert(id, order);",
};
