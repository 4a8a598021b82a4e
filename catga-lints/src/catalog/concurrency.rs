//! Shared state and locks.

use super::{Allow, Family, Level, Rule, Surface};

/// CATGA040.
pub static MUTABLE_STATIC: Rule = Rule {
    id: "CATGA040",
    name: "mutable_static",
    level: Level::Warning,
    family: Family::Concurrency,
    summary: "a `static mut` in a crate with handlers",
    help: "use an atomic, a `Mutex`, or state registered with `.state(…)`",
    rationale: "Handlers run concurrently on several threads; every access to a `static mut` from \
                two of them at once is a data race, which is undefined behaviour.",
    surfaces: &[Surface::Cli],
    allow: Allow::CommandLine,
    bad: "static mut ORDERS: u64 = 0;",
    good: "static ORDERS: AtomicU64 = AtomicU64::new(0);",
};

/// CATGA041.
pub static UNSYNC_STATE: Rule = Rule {
    id: "CATGA041",
    name: "unsync_state",
    level: Level::Warning,
    family: Family::Concurrency,
    summary: "handler state holds `Cell`, `RefCell` or `Rc`, which cannot be shared between threads",
    help: "use `Mutex`/`RwLock` instead of `RefCell`, atomics instead of `Cell`, `Arc` instead of `Rc`",
    rationale: "State is shared by concurrent dispatches on several threads, so it must be `Sync`. \
                rustc reports a missing `Sync` once per place the state crosses threads (the \
                handler's future, the state table, `.state(…)`), and `#[handler]` sees only \
                `&Counter`, not its fields; this rule reads the type and names the field.",
    surfaces: &[Surface::Cli],
    allow: Allow::CommandLine,
    bad: "pub struct Orders { cache: RefCell<HashMap<u64, Order>> }",
    good: "pub struct Orders { cache: Mutex<HashMap<u64, Order>> }",
};

/// CATGA042.
pub static NESTED_LOCKS: Rule = Rule {
    id: "CATGA042",
    name: "nested_locks",
    level: Level::Warning,
    family: Family::Concurrency,
    summary: "a second lock is taken while a guard is held",
    help: "take one lock at a time, or always take them in one documented order",
    rationale: "Two dispatches that take the same two locks in opposite orders deadlock; holding \
                one lock while taking another is where that starts.",
    surfaces: &[Surface::Expansion, Surface::Cli],
    allow: Allow::Handler,
    bad: "let orders = self.orders.lock()?;\nlet stock = self.stock.lock()?;",
    good: "let order = self.orders.lock()?.get(&id).cloned();\nlet stock = self.stock.lock()?;",
};
