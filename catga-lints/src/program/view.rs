//! The rules that need many declarations at once, run over a view of the program: the whole
//! workspace, or one linked program.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::catalog::{self, Rule};
use crate::finding::Finding;
use crate::kind::Kind;
use crate::rules::body::{Dispatch, Verb};
use crate::rules::handler::Taking;
use crate::rules::naming;

use super::syntax::{OkType, has, last_ident, normalize, ok_type, unsync};
use super::{AbsPath, HandlerDecl, MessageDecl, Program, StructDecl};

/// The declarations of some sources: the whole workspace, or one linked program (a target with
/// the libraries it links).
pub(super) struct View<'p> {
    messages: Vec<&'p MessageDecl>,
    handlers: Vec<&'p HandlerDecl>,
    /// For each handler, the declared messages its parameter type names (`None`: the path
    /// could not be followed, so it is matched by name).
    targets: Vec<Option<Vec<AbsPath>>>,
    structs: HashMap<&'p str, &'p StructDecl>,
    mutable_statics: Vec<&'p (usize, Span, String)>,
    other_dispatches: Vec<&'p (usize, Dispatch)>,
    uses_transport: bool,
    handled_elsewhere: &'p [String],
}

impl<'p> View<'p> {
    pub(super) fn new(program: &'p Program, sources: &[usize]) -> View<'p> {
        let inside = |source: &usize| sources.contains(source);
        let handlers: Vec<&HandlerDecl> = program
            .handlers
            .iter()
            .filter(|h| inside(&h.source))
            .collect();
        let targets = handlers
            .iter()
            .map(|h| {
                let module = h.module.as_ref()?;
                program.paths.messages_named(module, &h.sig.message)
            })
            .collect();
        View {
            targets,
            messages: program
                .messages
                .iter()
                .filter(|m| inside(&m.source))
                .collect(),
            handlers,
            structs: program
                .structs
                .iter()
                .filter(|(_, s)| inside(&s.source))
                .map(|((_, name), s)| (name.as_str(), s))
                .collect(),
            mutable_statics: program
                .mutable_statics
                .iter()
                .filter(|s| inside(&s.0))
                .collect(),
            other_dispatches: program
                .other_dispatches
                .iter()
                .filter(|d| inside(&d.0))
                .collect(),
            handled_elsewhere: &program.handled_elsewhere,
            uses_transport: program
                .transport_uses
                .iter()
                .any(|(source, _)| inside(source)),
        }
    }

    fn message(&self, name: &str) -> Option<&'p MessageDecl> {
        self.messages.iter().copied().find(|m| m.name == name)
    }

    fn handlers_of(&self, m: &MessageDecl) -> Vec<&'p HandlerDecl> {
        self.handlers
            .iter()
            .zip(&self.targets)
            .filter(|(h, target)| handles(h, target.as_deref(), m))
            .map(|(h, _)| *h)
            .collect()
    }

    /// The message a handler takes, matched as [`handles`] does.
    fn message_of(&self, index: usize) -> Option<&'p MessageDecl> {
        let h = self.handlers.get(index)?;
        let target = self.targets.get(index)?.as_deref();
        self.messages
            .iter()
            .copied()
            .find(|m| handles(h, target, m))
    }

    /// Rules about each message that hold whatever links it: a handler anywhere in the
    /// linted crates counts; serde derives and the name's tense are properties of the type.
    pub(super) fn workspace_rules(&self, out: &mut Vec<(usize, Finding)>) {
        for m in &self.messages {
            let allowed = |rule: &Rule| m.args.allows(rule);
            let handled = !self.handlers_of(m).is_empty();
            let elsewhere = self.handled_elsewhere.contains(&m.name);
            if !handled
                && !elsewhere
                && m.kind.is_request()
                && !allowed(&catalog::REQUEST_WITHOUT_HANDLER)
            {
                out.push((
                    m.source,
                    Finding::new(
                        &catalog::REQUEST_WITHOUT_HANDLER,
                        m.span,
                        format!(
                            "{} `{}` has no handler in the linted crates",
                            m.kind.attr(),
                            shown_path(m)
                        ),
                    ),
                ));
            }
            if !handled && m.kind == Kind::Event && !allowed(&catalog::EVENT_WITHOUT_HANDLER) {
                out.push((
                    m.source,
                    Finding::new(
                        &catalog::EVENT_WITHOUT_HANDLER,
                        m.span,
                        format!("event `{}` has no handler in the linted crates", m.name),
                    ),
                ));
            }
            let serde = has(&m.derives, "Serialize") && has(&m.derives, "Deserialize");
            if !m.args.local && !serde {
                out.push((
                    m.source,
                    Finding::new(
                        &catalog::WIRE_MESSAGE_NOT_SERDE,
                        m.span,
                        format!("`{}` travels over the wire but does not derive `Serialize` and `Deserialize`", m.name),
                    ),
                ));
            }
            if m.kind == Kind::Event
                && !naming::reads_as_past(&m.name)
                && !allowed(&catalog::EVENT_NAME_TENSE)
            {
                out.push((
                    m.source,
                    Finding::new(
                        &catalog::EVENT_NAME_TENSE,
                        m.span,
                        format!(
                            "event `{}` does not read as something that happened",
                            m.name
                        ),
                    ),
                ));
            }
        }
    }

    /// Rules that hold for one linked program: duplicates, and what each handler's message
    /// (looked up among the messages that program can see) says about the handler.
    pub(super) fn unit_rules(&self, out: &mut Vec<(usize, Finding)>) {
        let mut by_wire: HashMap<&str, Vec<&MessageDecl>> = HashMap::new();
        for m in &self.messages {
            by_wire.entry(m.wire.as_str()).or_default().push(m);
            let handlers = self.handlers_of(m);
            let n = handlers.len();
            if m.kind.is_request() && n > 1 {
                let all = handlers
                    .iter()
                    .map(|h| format!("`{}`", h.name))
                    .collect::<Vec<_>>()
                    .join(", ");
                // Each is reported: none of them is the "real" one.
                for h in &handlers {
                    out.push((
                        h.source,
                        Finding::new(
                            &catalog::DUPLICATE_HANDLER,
                            h.sig.ident.span(),
                            format!(
                                "`{}` has {n} handlers ({all}); a request has exactly one",
                                m.name
                            ),
                        ),
                    ));
                }
            }
            if self.uses_transport
                && m.kind == Kind::Command
                && !m.args.local
                && !m.args.idempotent
                && !m.args.allows(&catalog::COMMAND_WITHOUT_IDEMPOTENCY)
            {
                out.push((
                    m.source,
                    Finding::new(
                        &catalog::COMMAND_WITHOUT_IDEMPOTENCY,
                        m.span,
                        format!(
                            "command `{}` can arrive over a transport (this program uses one) but is not declared `idempotent`",
                            m.name
                        ),
                    ),
                ));
            }
        }
        for (wire, decls) in &by_wire {
            if decls.len() > 1 {
                let all = decls
                    .iter()
                    .map(|d| format!("`{}`", shown_path(d)))
                    .collect::<Vec<_>>()
                    .join(", ");
                for d in &decls[1..] {
                    out.push((
                        d.source,
                        Finding::new(
                            &catalog::DUPLICATE_WIRE_NAME,
                            d.span,
                            format!("{all} share the wire name `{wire}`"),
                        ),
                    ));
                }
            }
        }
        self.handler_rules(out);
        self.verb_rules(out);
        if !self.handlers.is_empty() {
            for (source, span, name) in self.mutable_statics.iter().copied() {
                out.push((
                    *source,
                    Finding::new(
                        &catalog::MUTABLE_STATIC,
                        *span,
                        format!("`static mut {name}` in a program whose handlers run concurrently"),
                    ),
                ));
            }
        }
    }

    fn handler_rules(&self, out: &mut Vec<(usize, Finding)>) {
        let mut reported_state = std::collections::HashSet::new();
        for (index, h) in self.handlers.iter().enumerate() {
            let Some(m) = self.message_of(index) else {
                continue;
            };
            if m.kind == Kind::Event && h.sig.taking == Taking::Value && !has(&m.derives, "Clone") {
                out.push((
                    h.source,
                    Finding::new(
                        &catalog::EVENT_BY_VALUE_NOT_CLONE,
                        h.sig.message.span(),
                        format!(
                            "`{}` is an event taken by value, but it does not derive `Clone`",
                            m.name
                        ),
                    ),
                ));
            }
            if m.kind.is_request() && h.sig.taking == Taking::Ref {
                out.push((
                    h.source,
                    Finding::new(
                        &catalog::REQUEST_BY_REFERENCE,
                        h.sig.message.span(),
                        format!(
                            "`{}` is a {} taken by reference; only events can be borrowed",
                            m.name,
                            m.kind.attr()
                        ),
                    ),
                ));
                continue;
            }
            match ok_type(&h.sig.ret) {
                OkType::Found(ok) => {
                    let declared = match (&m.args.output, m.kind) {
                        (Some(ty), Kind::Command | Kind::Query) => normalize(ty),
                        _ => "()".to_string(),
                    };
                    if normalize(ok) != declared {
                        out.push((
                            h.source,
                            Finding::new(
                                &catalog::HANDLER_OUTPUT_MISMATCH,
                                ok.span(),
                                format!(
                                    "`{}` declares output `{declared}`, but this handler returns `{}`",
                                    m.name,
                                    normalize(ok)
                                ),
                            ),
                        ));
                    }
                }
                OkType::NotResult => out.push((
                    h.source,
                    Finding::new(
                        &catalog::HANDLER_RETURN_NOT_RESULT,
                        h.sig.ret.span(),
                        format!("handler `{}` must return `Result<Output, E>`", h.name),
                    ),
                )),
                OkType::Unknown => {}
            }
            for d in &h.facts.dispatches {
                let target = d.message.as_deref().and_then(|n| self.message(n));
                let side_effect = (d.through_context && d.verb == Verb::Publish)
                    || target.is_some_and(|t| t.kind != Kind::Query);
                if m.kind == Kind::Query && side_effect {
                    out.push((
                        h.source,
                        Finding::new(
                            &catalog::QUERY_SIDE_EFFECTS,
                            d.span,
                            format!(
                                "`{}` is a query, but its handler `{}` publishes or sends here",
                                m.name, h.name
                            ),
                        ),
                    ));
                }
            }
            if m.kind == Kind::Command && !h.args.allows(&catalog::EXTERNAL_CALL_IN_COMMAND) {
                for (span, what) in &h.facts.external_calls {
                    out.push((
                        h.source,
                        Finding::new(
                            &catalog::EXTERNAL_CALL_IN_COMMAND,
                            *span,
                            format!(
                                "command handler `{}` calls an external system directly: {what}",
                                h.name
                            ),
                        ),
                    ));
                }
            }
            if !h.args.allows(&catalog::UNSYNC_STATE) {
                for ty in &h.state {
                    let Some(state) = last_ident(ty) else {
                        continue;
                    };
                    let Some(decl) = self.structs.get(state.as_str()) else {
                        continue;
                    };
                    for (field, field_ty) in &decl.fields {
                        // One report per field, naming the first handler that borrows it.
                        if let Some(culprit) = unsync(field_ty)
                            && reported_state.insert((state.clone(), field.clone()))
                        {
                            out.push((
                                decl.source,
                                Finding::new(
                                    &catalog::UNSYNC_STATE,
                                    field_ty.span(),
                                    format!(
                                        "`{state}` is state of handler `{}`, but its field `{field}` holds a `{culprit}`",
                                        h.name
                                    ),
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }

    /// A message sent or published with the wrong verb, anywhere in the program.
    fn verb_rules(&self, out: &mut Vec<(usize, Finding)>) {
        let in_handlers = self
            .handlers
            .iter()
            .flat_map(|h| h.facts.dispatches.iter().map(move |d| (h.source, d)));
        let elsewhere = self.other_dispatches.iter().map(|(s, d)| (*s, d));
        for (source, d) in in_handlers.chain(elsewhere) {
            let Some(m) = d.message.as_deref().and_then(|n| self.message(n)) else {
                continue;
            };
            let wrong = match d.verb {
                Verb::Send => m.kind == Kind::Event,
                Verb::Publish => m.kind.is_request(),
            };
            if wrong {
                let (verb, right) = match d.verb {
                    Verb::Send => ("sent", "publish"),
                    Verb::Publish => ("published", "send"),
                };
                out.push((
                    source,
                    Finding::new(
                        &catalog::WRONG_VERB,
                        d.span,
                        format!(
                            "`{}` is {}, so it cannot be {verb}",
                            m.name,
                            m.kind.with_article()
                        ),
                    )
                    .with_help(format!("use `.{right}(…)`")),
                ));
            }
        }
    }
}

/// Whether handler `h`, whose parameter type resolved to `target`, handles message `m`: by
/// path when both paths are known (a same-named type elsewhere does not count), by the last
/// identifier when either is not (paths given on the command line, a path not followed).
fn handles(h: &HandlerDecl, target: Option<&[AbsPath]>, m: &MessageDecl) -> bool {
    match (target, &m.path) {
        (Some(found), Some(path)) => found.contains(path),
        _ => last_ident(&h.sig.message).as_deref() == Some(m.name.as_str()),
    }
}

/// A message as a finding names it: its path when known (two types may share a name).
fn shown_path(m: &MessageDecl) -> String {
    m.path
        .as_ref()
        .map_or_else(|| m.name.clone(), |path| path.join("::"))
}
