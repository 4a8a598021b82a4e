//! Delivery across processes.

use super::{Allow, Family, Level, Rule, Surface};

/// CATGA060.
pub static EXTERNAL_CALL_IN_COMMAND: Rule = Rule {
    id: "CATGA060",
    name: "external_call_in_command",
    level: Level::Warning,
    family: Family::Reliability,
    summary: "a command handler calls an external system directly",
    help: "announce the change with `ctx.publish(event)` and let an event handler (or the outbox) call the external system",
    rationale: "If the handler's transaction fails after the call, or the call succeeds and the \
                handler then fails, the two systems disagree. Publishing an event (through the \
                outbox when there is one) makes the external call follow the committed change. \
                Writes queued in the dispatch's unit of work (`catga_redis::RedisWrites`: \
                `writes.xadd(…)`, `writes.command(redis::cmd(…), …)`) commit with the handler and \
                are not external calls; building a command (`redis::cmd`, `redis::pipe`) is not \
                a call either, sending it (`query_async`, `invoke_async`) is.",
    surfaces: &[Surface::Cli],
    allow: Allow::Handler,
    bad: "#[handler]\nasync fn place(cmd: PlaceOrder, http: &reqwest::Client) -> Result<u64, ShopError> {\n    http.post(WEBHOOK).send().await?;\n    Ok(1)\n}",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, ShopError> {\n    ctx.publish(OrderPlaced { id: 1 })?;\n    Ok(1)\n}",
};

/// CATGA061.
pub static COMMAND_WITHOUT_IDEMPOTENCY: Rule = Rule {
    id: "CATGA061",
    name: "command_without_idempotency",
    level: Level::Warning,
    family: Family::Reliability,
    summary: "a command can arrive over a transport but is not declared idempotent",
    help: "declare `#[command(idempotent)]` and make the handler safe to repeat, or `local` if it never crosses a process",
    rationale: "A command that may already have taken effect (a timeout while its handler ran, a \
                lost reply, a redelivery after its instance died) is run again only when it is \
                declared `idempotent`: `Retry` does not repeat its in-doubt failures, and a \
                transport that redelivers it answers `in_doubt` instead of running it twice. \
                Declaring it, and making the handler safe to repeat, lets those retries recover.",
    surfaces: &[Surface::Cli],
    allow: Allow::Message,
    bad: "// the crate uses catga_nats\n#[command]\npub struct ChargeCard { pub cents: u64 }",
    good: "// the crate uses catga_nats\n#[command(idempotent)]\npub struct ChargeCard { pub cents: u64 }",
};
