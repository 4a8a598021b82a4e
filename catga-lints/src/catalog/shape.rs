//! Handler shape: what `#[handler]` accepts.

use super::{Allow, Family, Level, Rule, Surface};

const HERE_AND_CLI: &[Surface] = &[Surface::Expansion, Surface::Cli];
const TYPES_AND_CLI: &[Surface] = &[Surface::Compiler, Surface::Cli];

/// CATGA001.
pub static HANDLER_NOT_ASYNC: Rule = Rule {
    id: "CATGA001",
    name: "handler_not_async",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler must be an `async fn`",
    help: "write `async fn`",
    rationale: "Dispatch awaits every handler; a synchronous function would block the runtime thread \
                for as long as it runs, and catga cannot tell a quick one from a slow one.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nfn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA002.
pub static HANDLER_WITHOUT_MESSAGE: Rule = Rule {
    id: "CATGA002",
    name: "handler_without_message",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler must take the message it handles",
    help: "add the message as a parameter, e.g. `cmd: PlaceOrder` (or `event: &OrderPlaced`)",
    rationale: "The message parameter is how catga knows what a handler handles: registration, \
                the dispatch table and every compile-time check start from it.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(ctx: &Context) -> Result<u64, ShopError> { Ok(1) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA003.
pub static HANDLER_TWO_MESSAGES: Rule = Rule {
    id: "CATGA003",
    name: "handler_two_messages",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler takes exactly one message",
    help: "state parameters are borrowed: write `&T` for everything but the message",
    rationale: "A handler runs for one message type. A second by-value parameter is almost always \
                state that should be borrowed (`&Db`), resolved once when the application is built.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(cmd: PlaceOrder, db: Db) -> Result<u64, ShopError> { Ok(1) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder, db: &Db) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA004.
pub static HANDLER_RETURN_NOT_RESULT: Rule = Rule {
    id: "CATGA004",
    name: "handler_return_not_result",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler must return `Result<Output, E>`",
    help: "return `Result<Output, E>` where `E: std::error::Error + Send + Sync + 'static`, or `anyhow::Result<Output>`, `eyre::Result<Output>`, `Result<Output, Box<dyn Error + Send + Sync>>`, `Result<Output, String>`",
    rationale: "Failure is part of every handler's contract: retries, dead letters and the caller's \
                error all need the handler's own error value, not a panic or a silent default.",
    surfaces: &[Surface::Expansion, Surface::Compiler, Surface::Cli],
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(cmd: PlaceOrder) -> u64 { 1 }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA005.
pub static EVENT_BY_VALUE_NOT_CLONE: Rule = Rule {
    id: "CATGA005",
    name: "event_by_value_not_clone",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "an event handler takes the event by value, but the event is not `Clone`",
    help: "take the event by reference (`event: &OrderPlaced`), or derive `Clone` for it",
    rationale: "Every handler of an event sees the same event. A handler that owns it needs its \
                own copy; borrowing is free and almost always enough.",
    surfaces: TYPES_AND_CLI,
    allow: Allow::Never,
    bad: "#[event]\npub struct OrderPlaced { pub id: u64 }\n\n#[handler]\nasync fn mail(event: OrderPlaced) -> Result<(), MailError> { Ok(()) }",
    good: "#[event]\npub struct OrderPlaced { pub id: u64 }\n\n#[handler]\nasync fn mail(event: &OrderPlaced) -> Result<(), MailError> { Ok(()) }",
};

/// CATGA006.
pub static HANDLER_GENERIC: Rule = Rule {
    id: "CATGA006",
    name: "handler_generic",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler cannot be generic",
    help: "write one handler per message type; share the logic in an ordinary generic function",
    rationale: "Handlers are registered for concrete message types when the program links; a \
                generic one has no single type to be registered for.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nasync fn save<T: Entity>(cmd: Save<T>) -> Result<(), DbError> { Ok(()) }",
    good: "#[handler]\nasync fn save_order(cmd: SaveOrder) -> Result<(), DbError> { save(cmd.0).await }",
};

/// CATGA007.
pub static HANDLER_MUTABLE_PARAMETER: Rule = Rule {
    id: "CATGA007",
    name: "handler_mutable_parameter",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler cannot take `&mut` state or `self` by value",
    help: "take `&self` / `&T` and use interior mutability (`Mutex`, atomics) for changes",
    rationale: "State is shared by every concurrent dispatch; exclusive access would serialise \
                them all, so catga hands out shared references only.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nimpl Orders {\n    async fn place(&mut self, cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n}",
    good: "#[handler]\nimpl Orders {\n    async fn place(&self, cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n}",
};

/// CATGA008.
pub static HANDLER_MISPLACED: Rule = Rule {
    id: "CATGA008",
    name: "handler_misplaced",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "`#[handler]` goes on an `async fn` or an inherent `impl` block",
    help: "put `#[handler]` on the `async fn`, or on `impl MyService { … }` (not a trait impl)",
    rationale: "Only functions and inherent methods can be called as handlers; on anything else the \
                attribute would silently register nothing.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nimpl Handle<PlaceOrder> for Orders { /* … */ }",
    good: "#[handler]\nimpl Orders {\n    async fn place(&self, cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n}",
};

/// CATGA009.
pub static HANDLER_IMPL_HELPER: Rule = Rule {
    id: "CATGA009",
    name: "handler_impl_helper",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "every item of a `#[handler] impl` block is a handler",
    help: "move constructors, helpers and constants into a separate `impl` block without `#[handler]`",
    rationale: "An `impl` block under `#[handler]` registers each method; a helper there is either a \
                mistake or a handler that will never be found.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nimpl Orders {\n    fn new() -> Self { Orders }\n    async fn place(&self, cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n}",
    good: "impl Orders {\n    fn new() -> Self { Orders }\n}\n\n#[handler]\nimpl Orders {\n    async fn place(&self, cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }\n}",
};

/// CATGA010.
pub static HANDLER_OUTPUT_MISMATCH: Rule = Rule {
    id: "CATGA010",
    name: "handler_output_mismatch",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "the handler's `Ok` type is not the output its message declares",
    help: "return `Result<Output, E>` with the `output = …` of the message's attribute (`()` for an event or a bare `#[command]`)",
    rationale: "The caller of `send` gets the message's declared output; a handler that returns \
                something else could not be called through the message.",
    surfaces: TYPES_AND_CLI,
    allow: Allow::Never,
    bad: "#[command(output = u64)]\npub struct PlaceOrder;\n\n#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<String, ShopError> { Ok(String::new()) }",
    good: "#[command(output = u64)]\npub struct PlaceOrder;\n\n#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA018.
pub static CONTEXT_BY_VALUE: Rule = Rule {
    id: "CATGA018",
    name: "context_by_value",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler takes the `Context` by value",
    help: "borrow it: `ctx: &Context`",
    rationale: "The context belongs to the dispatch, which keeps using it after the handler \
                returns (to publish the events the handler queued, and to read its deadline); \
                the handler borrows it for the call.",
    surfaces: HERE_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(cmd: PlaceOrder, ctx: Context) -> Result<u64, ShopError> { Ok(1) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder, ctx: &Context) -> Result<u64, ShopError> { Ok(1) }",
};

/// CATGA019.
pub static REQUEST_BY_REFERENCE: Rule = Rule {
    id: "CATGA019",
    name: "request_by_reference",
    level: Level::Error,
    family: Family::HandlerShape,
    summary: "a handler borrows a command or query (`&PlaceOrder`); only events can be borrowed",
    help: "take it by value: `cmd: PlaceOrder`",
    rationale: "A request has exactly one handler, which owns it: the dispatch moves the message \
                into the call. Borrowing is how a handler says it shares an event with the other \
                handlers of that event, so `&M` makes the handler an event handler.",
    surfaces: TYPES_AND_CLI,
    allow: Allow::Never,
    bad: "#[handler]\nasync fn place(cmd: &PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
    good: "#[handler]\nasync fn place(cmd: PlaceOrder) -> Result<u64, ShopError> { Ok(1) }",
};
