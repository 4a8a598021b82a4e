//! What counts as a call to an external system in a command handler (CATGA060): the client
//! crates, the methods that send whatever their receiver, the functions that only build a
//! value to send later, and the units of work whose writes commit with the handler.

use syn::Expr;

/// Crates whose calls reach an external system (CATGA060).
pub(super) const CLIENT_CRATES: &[&str] = &[
    "reqwest",
    "ureq",
    "hyper",
    "surf",
    "isahc",
    "async_nats",
    "nats",
    "redis",
    "lapin",
    "rdkafka",
    "rumqttc",
    "tonic",
    "lettre",
];

/// Methods that send to an external system whatever their receiver (CATGA060), unless the
/// receiver is a unit of work that only queues them (`RedisWrites`, see [`UNITS_OF_WORK`]).
pub(super) const CLIENT_METHODS: &[&str] = &[
    "publish_with_headers",
    "publish_with_reply",
    "xadd",
    "basic_publish",
    "send_email",
    // redis: a command, pipeline or script sent and its answer awaited.
    "query_async",
    "invoke_async",
    "exec_async",
];

/// Functions of the client crates that only build a value, sent later by a method that is
/// itself reported (`query_async`): `redis::cmd("SET")` handed to a unit of work that commits
/// it with the handler's other writes is no external call.
pub(super) const BUILDERS: &[&[&str]] = &[
    &["redis", "cmd"],
    &["redis", "pipe"],
    &["redis", "Cmd", "new"],
    &["redis", "Pipeline", "new"],
    &["redis", "Script", "new"],
];

/// Types whose `current()` is the dispatch's unit of work: their write methods (`xadd`, …)
/// queue a write that commits with the handler's transaction, the outbox's way, so they are
/// not external calls (`catga_redis::RedisWrites`).
pub(super) const UNITS_OF_WORK: &[&str] = &["RedisWrites"];

/// Whether `expr` is `UnitOfWork::current()`, possibly followed by `?` or a method call
/// (`RedisWrites::current()?`, `RedisWrites::current().map_err(…)?`).
pub(super) fn opens_unit_of_work(expr: &Expr) -> bool {
    match expr {
        Expr::Try(t) => opens_unit_of_work(&t.expr),
        Expr::MethodCall(m) => opens_unit_of_work(&m.receiver),
        Expr::Call(call) => match &*call.func {
            Expr::Path(f) => {
                let path = super::body::segments(&f.path);
                path.len() >= 2
                    && path.last().is_some_and(|s| s == "current")
                    && UNITS_OF_WORK.contains(&path[path.len() - 2].as_str())
            }
            _ => false,
        },
        _ => false,
    }
}
