//! Message declarations: what `#[command]`, `#[query]` and `#[event]` accept.

use super::{Allow, Family, Level, Rule, Surface};

const HERE_AND_CLI: &[Surface] = &[Surface::Expansion, Surface::Cli];

/// CATGA011.
pub static MESSAGE_SHAPE: Rule = Rule {
    id: "CATGA011",
    name: "message_shape",
    level: Level::Error,
    family: Family::Message,
    summary: "a message must be a concrete, owned struct or enum",
    help: "declare one concrete, owned struct or enum per message (`String` rather than `&str`)",
    rationale: "A message has one wire name and one dispatch slot, and may cross tasks, threads and \
                processes: it must be a single `'static` type.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[command]\npub struct Rename<'a> { pub name: &'a str }",
    good: "#[command]\npub struct Rename { pub name: String }",
};

/// CATGA012.
pub static UNKNOWN_ARGUMENT: Rule = Rule {
    id: "CATGA012",
    name: "unknown_argument",
    level: Level::Error,
    family: Family::Message,
    summary: "unknown attribute argument",
    help: "use one of the arguments the attribute lists",
    rationale: "A misspelt argument (`timout = \"5s\"`) would otherwise be ignored and the setting \
                silently lost.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[command(timout = \"5s\")]\npub struct PlaceOrder;",
    good: "#[command(timeout = \"5s\")]\npub struct PlaceOrder;",
};

/// CATGA013.
pub static INVALID_WIRE_NAME: Rule = Rule {
    id: "CATGA013",
    name: "invalid_wire_name",
    level: Level::Error,
    family: Family::Message,
    summary: "invalid wire name",
    help: "use 1 to 200 letters, digits and `.` `_` `-` `:` `/`, e.g. `name = \"orders.place\"`",
    rationale: "Wire names become NATS subjects and Redis stream keys; spaces and wildcards there \
                would route messages to the wrong place.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[command(name = \"orders place\")]\npub struct PlaceOrder;",
    good: "#[command(name = \"orders.place\")]\npub struct PlaceOrder;",
};

/// CATGA014.
pub static MESSAGE_OUTPUT_KIND: Rule = Rule {
    id: "CATGA014",
    name: "message_output_kind",
    level: Level::Error,
    family: Family::Message,
    summary: "a query must declare its output and an event cannot have one",
    help: "write `#[query(output = T)]`; remove `output` from an `#[event]`",
    rationale: "A query exists to return something; an event is delivered to any number of \
                handlers and has nobody to reply to.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[query]\npub struct GetOrder { pub id: u64 }",
    good: "#[query(output = Option<Order>)]\npub struct GetOrder { pub id: u64 }",
};

/// CATGA015.
pub static INVALID_POLICY: Rule = Rule {
    id: "CATGA015",
    name: "invalid_policy",
    level: Level::Error,
    family: Family::Message,
    summary: "invalid per-message setting",
    help: "write `timeout = \"250ms\"` (units ms, s, m, h) and `retry = n` with n ≥ 1",
    rationale: "Settings are checked when the code compiles so a typo cannot surface as a runtime \
                surprise.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[command(timeout = \"5 seconds\", retry = 0)]\npub struct PlaceOrder;",
    good: "#[command(timeout = \"5s\", retry = 3)]\npub struct PlaceOrder;",
};

/// CATGA016.
pub static WIRE_MESSAGE_NOT_SERDE: Rule = Rule {
    id: "CATGA016",
    name: "wire_message_not_serde",
    level: Level::Error,
    family: Family::Message,
    summary: "a message that travels over the wire must implement `Serialize` and `Deserialize`",
    help: "derive them (`#[derive(Serialize, Deserialize)]`), or declare the message `local` if it never leaves the process",
    rationale: "Any message can reach another process through a transport or the bytes path; the \
                check happens when the message is declared, not when a transport first needs it.",
    surfaces: &[Surface::Compiler, Surface::Cli],
    allow: Allow::Never,
    bad: "#[command]\npub struct PlaceOrder { pub id: u64 }",
    good: "#[command]\n#[derive(Serialize, Deserialize)]\npub struct PlaceOrder { pub id: u64 }",
};

/// CATGA017.
pub static WRONG_VERB: Rule = Rule {
    id: "CATGA017",
    name: "wrong_verb",
    level: Level::Error,
    family: Family::Message,
    summary: "commands and queries are sent, events are published",
    help: "use `app.send(…)` for a command or query and `app.publish(…)` for an event",
    rationale: "`send` expects exactly one handler and a reply; `publish` reaches any number of \
                handlers and returns none. Mixing them up would lose replies or handlers.",
    surfaces: &[Surface::Compiler, Surface::Cli],
    allow: Allow::Never,
    bad: "app.send(OrderPlaced { id }).await?;",
    good: "app.publish(OrderPlaced { id }).await?;",
};

/// CATGA062.
pub static MESSAGE_TOO_LARGE: Rule = Rule {
    id: "CATGA062",
    name: "message_too_large",
    level: Level::Warning,
    family: Family::Reliability,
    summary: "the message is over the size budget",
    help: "keep messages small: reference large data by id, or move bulk data into a `Vec` or a blob store",
    rationale: "A message is cloned for retries and events, copied into every envelope and held in \
                outboxes; more than 64 fields or an inline array over 4 KiB is a payload, not a \
                message.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Message,
    bad: "#[command]\npub struct Upload { pub bytes: [u8; 65536] }",
    good: "#[command]\npub struct Upload { pub blob_id: u64 }",
};
