//! Startup problems: what `build()` finds wrong with the whole program.

use std::fmt;

use crate::handler::HandlerMeta;
use crate::message::{Location, MessageKind};

/// One thing wrong with the application, found at build time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A command or query has no handler.
    NoHandler {
        /// The message's wire name.
        message: &'static str,
        /// Command or query.
        kind: MessageKind,
        /// Where the message type is declared.
        declared_at: Location,
    },
    /// A command or query has more than one handler.
    DuplicateHandler {
        /// The message's wire name.
        message: &'static str,
        /// Every handler of it.
        handlers: Vec<HandlerMeta>,
    },
    /// A handler borrows state nobody registered with `.state(…)`.
    MissingState {
        /// The handler.
        handler: HandlerMeta,
        /// The state types it needs that are missing.
        types: Vec<&'static str>,
    },
    /// Two message types share one wire name.
    WireNameClash {
        /// The shared name.
        name: &'static str,
        /// Each type and where it is declared.
        types: Vec<(&'static str, Location)>,
    },
    /// The same state type was registered twice; only the last value would be used.
    DuplicateState {
        /// The state type.
        type_name: &'static str,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NoHandler {
                message,
                kind,
                declared_at,
            } => write!(
                f,
                "no handler for {kind} `{message}` (declared at {declared_at})\n   \
                 help: write an `async fn` taking `{message}` with `#[handler]`, or call \
                 `.allow_unhandled::<…>()` if another process handles it\n   \
                 note: if its handler is in a library crate this binary never names, the linker \
                 leaves that crate out: name it once in the binary (`use my_handlers as _;`)"
            ),
            Problem::DuplicateHandler { message, handlers } => {
                write!(
                    f,
                    "`{message}` has {} handlers; a request must have exactly one:",
                    handlers.len()
                )?;
                for h in handlers {
                    write!(f, "\n   - `{}` at {}", h.name, h.location)?;
                }
                write!(
                    f,
                    "\n   help: remove all but one, or make `{message}` an `#[event]`"
                )
            }
            Problem::MissingState { handler, types } => {
                let list = types
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(
                    f,
                    "handler `{}` at {} needs state that was not registered: {list}\n   \
                     help: add `.state(…)` with a value of each type to the builder",
                    handler.name, handler.location
                )
            }
            Problem::WireNameClash { name, types } => {
                write!(
                    f,
                    "{} message types share the wire name `{name}`:",
                    types.len()
                )?;
                for (ty, at) in types {
                    write!(f, "\n   - `{ty}` at {at}")?;
                }
                write!(
                    f,
                    "\n   help: give each a distinct `name = \"…\"` in its attribute"
                )
            }
            Problem::DuplicateState { type_name } => write!(
                f,
                "state `{type_name}` was registered more than once\n   \
                 help: register it once, or wrap the values in distinct newtypes"
            ),
        }
    }
}

/// Every problem `build()` found, reported together.
///
/// `Debug` prints the same readable list as `Display`, so `fn main() -> Result<(), BuildError>`
/// (or a boxed error) shows the problems rather than a struct dump.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    problems: Vec<Problem>,
}

impl BuildError {
    pub(crate) fn new(problems: Vec<Problem>) -> Self {
        BuildError { problems }
    }

    /// The problems, in a stable order (by kind, then by name).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "catga: the application is misconfigured ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            write!(f, "\n{}. {p}", i + 1)?;
        }
        Ok(())
    }
}
