//! The dispatch machinery every path shares, in one place.
//!
//! A dispatch is a table lookup (`registry`), a trip through the behaviour stack
//! (`pipeline`), and a handler's future. What runs that future is here:
//!
//! * [`inline`]: the slot a handler's future is stored in without allocating, and the
//!   future that polls it there ([`SlotFuture`](inline::SlotFuture));
//! * [`slot_pool`]: reused blocks of slots for in-process publishes;
//! * [`converted`]: a handler's own future with its result converted (what `#[handler]`
//!   generates);
//! * [`attempt`]: one attempt of a handler, which drops the events a failed attempt queued;
//! * [`guard`]: the context's deadline and cancellation around a dispatch;
//! * [`join`]: joining a publish's handler futures where they are pinned;
//! * [`panic`]: containing a handler's panic to its one message;
//! * [`outcome`]: the one place a publish's handler failures become its result.
//!
//! The mediator, the static app and the transports' inbound path all use these; nothing here
//! depends on them.
//!
//! The small generic functions a handler's future passes through (`attempt`, `Attempt::poll`,
//! `SlotFuture::new` and the slot's poll/drop functions, and in `registry` the binding and the
//! erased calls) are `#[inline(always)]`. Not for speed: rustc places an ordinary generic
//! instantiation in a codegen unit named after the *generic's* module, so every handler of a
//! service shares a few big units, and editing one handler recompiles all of them in a debug
//! build. An `#[inline(always)]` function is copied into the unit of its caller, which is the
//! handler's own module, so an edit recompiles that module's unit (benches/compile-time).

pub(crate) mod attempt;
pub(crate) mod converted;
pub(crate) mod guard;
pub(crate) mod inline;
pub(crate) mod join;
pub(crate) mod outcome;
pub(crate) mod panic;
pub(crate) mod slot_pool;
