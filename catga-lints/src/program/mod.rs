//! The whole program as `cargo catga lint` sees it: every message, handler and `static mut` of
//! the linted sources, and the rules that need all of them at once (CATGA005, 010, 016, 017,
//! 040, 041, 050–055, 060, 061), on top of every per-item rule the macros also run.

mod collect;
mod linking;
mod paths;
mod syntax;
mod view;
mod wiring;

use std::collections::HashMap;

use proc_macro2::Span;
use syn::Type;
use syn::visit::Visit;

use collect::Collect;
pub use linking::{CrateFiles, Crates};
use paths::{AbsPath, Paths};
use view::View;
use wiring::Wiring;

use crate::finding::Finding;
use crate::kind::Kind;
use crate::rules::body::{BodyFacts, Dispatch};
use crate::rules::handler::{HandlerArgs, Signature};
use crate::rules::message::MessageArgs;

/// One parsed source file.
#[derive(Debug)]
pub struct Source {
    /// The path as it is shown in diagnostics.
    pub path: String,
    /// Its text.
    pub text: String,
    /// Its syntax tree.
    pub ast: syn::File,
    /// Its module path (`["shop", "orders"]`) when known, so handlers are matched to messages
    /// by path; without it, by name.
    pub module: Option<Vec<String>>,
}

/// A finding in a file (an index into [`Program::sources`]).
#[derive(Clone, Debug)]
pub struct Located {
    /// Which source.
    pub source: usize,
    /// What.
    pub finding: Finding,
}

/// A message declaration.
#[derive(Debug)]
struct MessageDecl {
    source: usize,
    kind: Kind,
    /// Its absolute path, when the file's module is known.
    path: Option<AbsPath>,
    name: String,
    span: Span,
    wire: String,
    args: MessageArgs,
    derives: Vec<String>,
}

/// A handler.
#[derive(Debug)]
struct HandlerDecl {
    source: usize,
    /// The module it is written in, when known (its message type is resolved there).
    module: Option<Vec<String>>,
    name: String,
    sig: Signature,
    args: HandlerArgs,
    facts: BodyFacts,
    /// Types whose values the handler borrows: the `impl` block's type and `&T` parameters.
    state: Vec<Type>,
}

/// A struct's fields, for state checks.
#[derive(Debug)]
struct StructDecl {
    source: usize,
    fields: Vec<(String, Type)>,
}

/// Everything collected from the sources.
#[derive(Debug, Default)]
pub struct Program {
    /// The sources, in the order given.
    pub sources: Vec<Source>,
    messages: Vec<MessageDecl>,
    handlers: Vec<HandlerDecl>,
    structs: HashMap<(usize, String), StructDecl>,
    mutable_statics: Vec<(usize, Span, String)>,
    /// Dispatches written outside handlers (for CATGA017).
    other_dispatches: Vec<(usize, Dispatch)>,
    /// Where the sources use a catga transport adapter (for CATGA061).
    transport_uses: Vec<(usize, Span)>,
    /// Requests the application declares handled by another process (`allow_unhandled`).
    handled_elsewhere: Vec<String>,
    /// Linked programs: source indices of a target and the libraries it links.
    units: Vec<Vec<usize>>,
    /// Modules, `use` items and message paths, for matching handlers by path.
    paths: Paths,
    /// The workspace's crates, for the linking rule (CATGA056).
    crates: Crates<usize>,
    findings: Vec<Located>,
}

impl Program {
    /// Collects every declaration of `sources` and runs the per-item rules on them. `units`
    /// lists the linked programs (indices into `sources`) for the rules that hold per program,
    /// such as duplicate handlers; each source should be in at least one.
    pub fn new(sources: Vec<Source>, units: Vec<Vec<usize>>) -> Program {
        let mut program = Program::default();
        for (index, source) in sources.iter().enumerate() {
            if let Some(module) = &source.module {
                program.paths.module(module);
            }
            let mut collect = Collect {
                program: &mut program,
                source: index,
                module: source.module.clone(),
            };
            collect.items(&source.ast.items);
            let mut wiring = Wiring::default();
            wiring.visit_file(&source.ast);
            if let Some(span) = wiring.transport {
                program.transport_uses.push((index, span));
            }
            program.handled_elsewhere.extend(wiring.handled_elsewhere);
        }
        program.sources = sources;
        program.units = units;
        program
    }

    /// Adds the workspace's crate graph (indices into the sources), so the linking rule can
    /// find handler crates an executable depends on but never names (CATGA056).
    #[must_use]
    pub fn with_crates(mut self, crates: Crates<usize>) -> Program {
        self.crates = crates;
        self
    }

    /// Runs the whole-program rules and returns every finding, sorted by place.
    pub fn check(mut self) -> (Vec<Source>, Vec<Located>) {
        self.whole_program_rules();
        let mut findings = std::mem::take(&mut self.findings);
        findings.sort_by_key(|l| {
            let start = l.finding.span.start();
            (l.source, start.line, start.column, l.finding.rule.id)
        });
        (self.sources, findings)
    }

    fn report(&mut self, source: usize, finding: Finding) {
        self.findings.push(Located { source, finding });
    }

    fn whole_program_rules(&mut self) {
        let mut out: Vec<(usize, Finding)> = Vec::new();
        let everything: Vec<usize> = (0..self.sources.len()).collect();
        let all = View::new(self, &everything);
        all.workspace_rules(&mut out);
        for unit in &self.units {
            View::new(self, unit).unit_rules(&mut out);
        }
        linking::unlinked_handlers(self, &mut out);
        // A source in several units (a library linked into each of its tests) is checked once
        // per unit; report each finding once.
        let mut seen = std::collections::HashSet::new();
        for (source, finding) in out {
            let at = finding.span.start();
            if seen.insert((
                source,
                at.line,
                at.column,
                finding.rule.id,
                finding.message.clone(),
            )) {
                self.report(source, finding);
            }
        }
    }
}
