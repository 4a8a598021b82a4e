//! Code that can panic inside handlers.

use super::{Allow, Family, Level, Rule, Surface};

const HERE_AND_CLI: &[Surface] = &[Surface::Expansion, Surface::Cli];

const WHY: &str = "A panic in a handler unwinds through the dispatch: the caller gets no typed \
                   error, retries and dead-lettering never see it, and events the handler queued \
                   are lost with it. Return the handler's error instead.";

/// CATGA030.
pub static UNWRAP_IN_HANDLER: Rule = Rule {
    id: "CATGA030",
    name: "unwrap_in_handler",
    level: Level::Warning,
    family: Family::Panics,
    summary: "`unwrap` in a handler can panic",
    help: "propagate the error with `?` (map it into the handler's error type)",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let order = self.orders.get(id).unwrap();",
    good: "let order = self.orders.get(id).ok_or(ShopError::NotFound(id))?;",
};

/// CATGA031.
pub static EXPECT_IN_HANDLER: Rule = Rule {
    id: "CATGA031",
    name: "expect_in_handler",
    level: Level::Warning,
    family: Family::Panics,
    summary: "`expect` in a handler can panic",
    help: "propagate the error with `?` (map it into the handler's error type)",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let price = cmd.price.parse::<u64>().expect(\"a price\");",
    good: "let price = cmd.price.parse::<u64>().map_err(ShopError::BadPrice)?;",
};

/// CATGA032.
pub static PANIC_IN_HANDLER: Rule = Rule {
    id: "CATGA032",
    name: "panic_in_handler",
    level: Level::Warning,
    family: Family::Panics,
    summary: "a handler panics explicitly",
    help: "return an error (`Err(MyError::…)`) instead of `panic!`, `unreachable!`, `todo!` or `unimplemented!`",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "if cmd.quantity == 0 { panic!(\"empty order\") }",
    good: "if cmd.quantity == 0 { return Err(ShopError::Empty) }",
};

/// CATGA033.
pub static INDEXING_IN_HANDLER: Rule = Rule {
    id: "CATGA033",
    name: "indexing_in_handler",
    level: Level::Warning,
    family: Family::Panics,
    summary: "indexing in a handler panics when the index is out of bounds",
    help: "use `.get(i)` and handle `None`",
    rationale: WHY,
    surfaces: HERE_AND_CLI,
    allow: Allow::Handler,
    bad: "let first = cmd.lines[0].sku.clone();",
    good: "let first = cmd.lines.first().ok_or(ShopError::Empty)?.sku.clone();",
};
