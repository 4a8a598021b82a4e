//! Command/query/event discipline and whole-program wiring.

use super::{Allow, Family, Level, Rule, Surface};

/// CATGA050.
pub static QUERY_SIDE_EFFECTS: Rule = Rule {
    id: "CATGA050",
    name: "query_side_effects",
    level: Level::Error,
    family: Family::Cqrs,
    summary: "a query handler publishes events or sends commands",
    help: "make the message a `#[command]` if it changes something, or move the side effect out of the query",
    rationale: "Queries are safe to repeat, cache and run anywhere; one that publishes or commands \
                breaks all three, and its callers cannot tell.",
    surfaces: &[Surface::Compiler, Surface::Cli],
    allow: Allow::Never,
    bad: "#[handler]\nasync fn get(q: GetOrder, ctx: &Context) -> Result<Option<Order>, ShopError> {\n    ctx.publish(OrderViewed { id: q.id })?;\n    Ok(None)\n}",
    good: "#[handler]\nasync fn get(q: GetOrder) -> Result<Option<Order>, ShopError> {\n    Ok(None)\n}",
};

/// CATGA051.
pub static EVENT_NAME_TENSE: Rule = Rule {
    id: "CATGA051",
    name: "event_name_tense",
    level: Level::Note,
    family: Family::Cqrs,
    summary: "an event's name does not read as something that happened",
    help: "name events in the past tense: `OrderPlaced`, not `PlaceOrder` or `OrderPlace`",
    rationale: "An event records a fact; a name in the imperative reads as a command and invites \
                handlers to treat it as a request that can be refused.",
    surfaces: &[Surface::Cli],
    allow: Allow::Message,
    bad: "#[event]\npub struct ShipOrder { pub id: u64 }",
    good: "#[event]\npub struct OrderShipped { pub id: u64 }",
};

/// CATGA052.
pub static REQUEST_WITHOUT_HANDLER: Rule = Rule {
    id: "CATGA052",
    name: "request_without_handler",
    level: Level::Warning,
    family: Family::Cqrs,
    summary: "a command or query has no handler in the linted crates",
    help: "write an `async fn` taking it with `#[handler]`, or lint the crate that handles it together with this one",
    rationale: "`build()` refuses an application with an unhandled request; the lint says so \
                before the program runs. It is a warning because another process may handle it.",
    surfaces: &[Surface::Cli],
    allow: Allow::Message,
    bad: "#[command]\npub struct CancelOrder { pub id: u64 }\n// … and no handler anywhere",
    good: "#[command]\npub struct CancelOrder { pub id: u64 }\n\n#[handler]\nasync fn cancel(cmd: CancelOrder) -> Result<(), ShopError> { Ok(()) }",
};

/// CATGA053.
pub static EVENT_WITHOUT_HANDLER: Rule = Rule {
    id: "CATGA053",
    name: "event_without_handler",
    level: Level::Note,
    family: Family::Cqrs,
    summary: "an event has no handler in the linted crates",
    help: "handle it, or remove it if nobody listens",
    rationale: "Publishing an event nobody handles is not an error, but often a forgotten handler.",
    surfaces: &[Surface::Cli],
    allow: Allow::Message,
    bad: "#[event]\npub struct OrderArchived { pub id: u64 }\n// … and no handler anywhere",
    good: "#[event]\npub struct OrderArchived { pub id: u64 }\n\n#[handler]\nasync fn index(event: &OrderArchived) -> Result<(), SearchError> { Ok(()) }",
};

/// CATGA054.
pub static DUPLICATE_HANDLER: Rule = Rule {
    id: "CATGA054",
    name: "duplicate_handler",
    level: Level::Error,
    family: Family::Cqrs,
    summary: "a command or query has more than one handler",
    help: "keep exactly one handler, or make the message an `#[event]` if several parties react to it",
    rationale: "A request has one handler and one reply; `build()` refuses two at startup, wherever \
                they are. Macro expansion sees only one `impl` block, so it reports two handlers \
                of one message there; `cargo catga lint` finds them across modules and crates \
                before the program runs.",
    surfaces: &[Surface::Expansion, Surface::Cli],
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n\n#[handler]\nasync fn place_too(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(2) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA055.
pub static DUPLICATE_WIRE_NAME: Rule = Rule {
    id: "CATGA055",
    name: "duplicate_wire_name",
    level: Level::Error,
    family: Family::Cqrs,
    summary: "two message types share a wire name",
    help: "give each message a distinct `name = \"…\"`",
    rationale: "A message arriving from another process is decoded by its wire name; two types \
                with one name make that ambiguous, and `build()` refuses it.",
    surfaces: &[Surface::Cli],
    allow: Allow::Never,
    bad: "#[command(name = \"orders.place\")]\npub struct PlaceOrder;\n\n#[command(name = \"orders.place\")]\npub struct PlaceOrderV2;",
    good: "#[command(name = \"orders.place\")]\npub struct PlaceOrder;\n\n#[command(name = \"orders.place.v2\")]\npub struct PlaceOrderV2;",
};

/// CATGA056.
pub static UNLINKED_HANDLERS: Rule = Rule {
    id: "CATGA056",
    name: "unlinked_handlers",
    level: Level::Warning,
    family: Family::Cqrs,
    summary: "an executable depends on a crate with handlers but never names it, so its handlers are left out",
    help: "name the crate once in the executable, e.g. `use my_handlers as _;` next to `main`",
    rationale: "rustc loads a dependency only when code names it; a crate listed in `Cargo.toml` \
                but never named is not linked, its `#[handler]` registrations are not in the \
                program, and `build()` finds no handler for its messages. The lint follows \
                what each binary, test, example and bench names, crate by crate.",
    surfaces: &[Surface::Cli],
    allow: Allow::CommandLine,
    bad: "// Cargo.toml: my_handlers = { path = \"../my_handlers\" }\nfn main() {\n    let app = Catga::builder().build();\n}",
    good: "use my_handlers as _; // links the crate, and with it its handlers\n\nfn main() {\n    let app = Catga::builder().build();\n}",
};
