//! The whole program as `cargo catga lint` sees it: every message, handler and `static mut` of
//! the linted sources, and the rules that need all of them at once (CATGA005, 010, 016, 017,
//! 040, 041, 050–055, 060, 061), on top of every per-item rule the macros also run.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Item, Meta, Type};

use crate::catalog::{self, Rule};
use crate::finding::Finding;
use crate::kind::Kind;
use crate::rules::body::{self, BodyFacts, Dispatch, Verb};
use crate::rules::handler::{self, HandlerArgs, Signature, Taking};
use crate::rules::message::{self, MessageArgs};
use crate::rules::naming;

/// One parsed source file.
#[derive(Debug)]
pub struct Source {
    /// The path as it is shown in diagnostics.
    pub path: String,
    /// Its text.
    pub text: String,
    /// Its syntax tree.
    pub ast: syn::File,
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
    findings: Vec<Located>,
}

impl Program {
    /// Collects every declaration of `sources` and runs the per-item rules on them. `units`
    /// lists the linked programs (indices into `sources`) for the rules that hold per program,
    /// such as duplicate handlers; each source should be in at least one.
    pub fn new(sources: Vec<Source>, units: Vec<Vec<usize>>) -> Program {
        let mut program = Program::default();
        for (index, source) in sources.iter().enumerate() {
            let mut collect = Collect {
                program: &mut program,
                source: index,
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

/// The declarations of some sources: the whole workspace, or one linked program (a target with
/// the libraries it links).
struct View<'p> {
    messages: Vec<&'p MessageDecl>,
    handlers: Vec<&'p HandlerDecl>,
    structs: HashMap<&'p str, &'p StructDecl>,
    mutable_statics: Vec<&'p (usize, Span, String)>,
    other_dispatches: Vec<&'p (usize, Dispatch)>,
    uses_transport: bool,
    handled_elsewhere: &'p [String],
}

impl<'p> View<'p> {
    fn new(program: &'p Program, sources: &[usize]) -> View<'p> {
        let inside = |source: &usize| sources.contains(source);
        View {
            messages: program
                .messages
                .iter()
                .filter(|m| inside(&m.source))
                .collect(),
            handlers: program
                .handlers
                .iter()
                .filter(|h| inside(&h.source))
                .collect(),
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
            .copied()
            .filter(|h| last_ident(&h.sig.message).as_deref() == Some(m.name.as_str()))
            .collect()
    }

    /// Rules about each message that hold whatever links it: a handler anywhere in the
    /// linted crates counts; serde derives and the name's tense are properties of the type.
    fn workspace_rules(&self, out: &mut Vec<(usize, Finding)>) {
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
                            m.name
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
    fn unit_rules(&self, out: &mut Vec<(usize, Finding)>) {
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
                    .map(|d| format!("`{}`", d.name))
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
        for h in &self.handlers {
            let Some(message_name) = last_ident(&h.sig.message) else {
                continue;
            };
            let Some(m) = self.message(&message_name) else {
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
                            "`{}` is a {}, so it cannot be {verb}",
                            m.name,
                            m.kind.attr()
                        ),
                    )
                    .with_help(format!("use `.{right}(…)`")),
                ));
            }
        }
    }
}

/// Walks a file's items.
struct Collect<'p> {
    program: &'p mut Program,
    source: usize,
}

/// The attribute named `name` (the last path segment: `#[handler]`, `#[catga_core::handler]`).
fn find_attr<'a>(attrs: &'a [Attribute], names: &[&str]) -> Option<(&'a Attribute, String)> {
    attrs.iter().find_map(|a| {
        let last = a.path().segments.last()?.ident.to_string();
        names.contains(&last.as_str()).then_some((a, last))
    })
}

/// The tokens inside an attribute's parentheses (empty for `#[handler]`).
fn attr_args(attr: &Attribute) -> proc_macro2::TokenStream {
    match &attr.meta {
        Meta::List(list) => list.tokens.clone(),
        _ => proc_macro2::TokenStream::new(),
    }
}

impl Collect<'_> {
    fn report(&mut self, findings: Vec<Finding>) {
        for finding in findings {
            self.program.report(self.source, finding);
        }
    }

    fn items(&mut self, items: &[Item]) {
        for item in items {
            self.item(item);
        }
    }

    fn item(&mut self, item: &Item) {
        let attrs: &[Attribute] = match item {
            Item::Struct(s) => &s.attrs,
            Item::Enum(e) => &e.attrs,
            Item::Fn(f) => &f.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Static(s) => &s.attrs,
            Item::Mod(m) => &m.attrs,
            Item::Trait(t) => &t.attrs,
            Item::Type(t) => &t.attrs,
            Item::Const(c) => &c.attrs,
            _ => &[],
        };
        if let Some((attr, name)) = find_attr(attrs, &["command", "query", "event"])
            && let Some(kind) = Kind::from_attr(&name)
        {
            self.message(kind, attr, item);
        } else if let Some((attr, _)) = find_attr(attrs, &["handler"]) {
            self.handler(attr, item);
        } else {
            self.plain(item);
        }
        if let Item::Struct(s) = item {
            let fields = s
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    (
                        f.ident
                            .as_ref()
                            .map_or_else(|| i.to_string(), ToString::to_string),
                        f.ty.clone(),
                    )
                })
                .collect();
            self.program.structs.insert(
                (self.source, s.ident.to_string()),
                StructDecl {
                    source: self.source,
                    fields,
                },
            );
        }
        if let Item::Mod(m) = item
            && let Some((_, items)) = &m.content
        {
            self.items(items);
        }
    }

    fn message(&mut self, kind: Kind, attr: &Attribute, item: &Item) {
        let mut findings = Vec::new();
        let args = MessageArgs::parse(kind, attr_args(attr), attr.span(), &mut findings);
        if let Some(ident) = message::check_shape(kind, item, &mut findings) {
            message::check_size(item, &args, &mut findings);
            let derives = item_derives(item);
            let name = ident.to_string();
            let wire = args
                .name
                .as_ref()
                .map_or_else(|| name.clone(), syn::LitStr::value);
            self.program.messages.push(MessageDecl {
                source: self.source,
                kind,
                name,
                span: ident.span(),
                wire,
                args,
                derives,
            });
        }
        self.report(findings);
    }

    fn handler(&mut self, attr: &Attribute, item: &Item) {
        let mut findings = Vec::new();
        let args = HandlerArgs::parse(attr_args(attr), &mut findings);
        match item {
            Item::Fn(f) => {
                if let Some(sig) = handler::analyze(&f.sig, false, &mut findings) {
                    let state = state_types(&sig, None);
                    self.add_handler(
                        f.sig.ident.to_string(),
                        sig,
                        &f.block,
                        args,
                        state,
                        &mut findings,
                    );
                }
            }
            Item::Impl(block) => {
                let self_ty = tokens(&block.self_ty);
                for (method, sig) in handler::analyze_impl(block, &mut findings) {
                    let state = state_types(&sig, Some(&block.self_ty));
                    let name = format!("{self_ty}::{}", method.sig.ident);
                    self.add_handler(name, sig, &method.block, args.clone(), state, &mut findings);
                }
            }
            other => findings.push(handler::misplaced(other)),
        }
        self.report(findings);
    }

    fn add_handler(
        &mut self,
        name: String,
        sig: Signature,
        block: &syn::Block,
        args: HandlerArgs,
        state: Vec<Type>,
        findings: &mut Vec<Finding>,
    ) {
        let mut facts = body::scan(block, sig.context.as_ref());
        facts.findings.retain(|f| !args.allows(f.rule));
        findings.append(&mut facts.findings);
        self.program.handlers.push(HandlerDecl {
            source: self.source,
            name,
            sig,
            args,
            facts,
            state,
        });
    }

    /// An item that is neither a message nor a handler: collect what whole-program rules need.
    fn plain(&mut self, item: &Item) {
        match item {
            Item::Static(s) if matches!(s.mutability, syn::StaticMutability::Mut(_)) => {
                self.program.mutable_statics.push((
                    self.source,
                    s.ident.span(),
                    s.ident.to_string(),
                ));
            }
            Item::Fn(f) => self.dispatches(&f.block),
            Item::Impl(i) => {
                for item in &i.items {
                    if let syn::ImplItem::Fn(m) = item {
                        self.dispatches(&m.block);
                    }
                }
            }
            _ => {}
        }
    }

    fn dispatches(&mut self, block: &syn::Block) {
        for d in body::dispatches(block) {
            self.program.other_dispatches.push((self.source, d));
        }
    }
}

/// What a file says about how the application is wired: the first use of a catga transport
/// adapter (`catga_nats`, `catga_redis`, …, or a `.transport(…)` call on a builder), and the
/// requests declared handled by another process (`.allow_unhandled::<M>()`).
#[derive(Default)]
struct Wiring {
    transport: Option<Span>,
    handled_elsewhere: Vec<String>,
}

const ADAPTERS: &[&str] = &["catga_nats", "catga_redis", "catga_postgres"];

impl<'ast> Visit<'ast> for Wiring {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if self.transport.is_none()
            && let Some(first) = path.segments.first()
            && ADAPTERS.contains(&first.ident.to_string().as_str())
        {
            self.transport = Some(first.ident.span());
        }
        visit::visit_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        if self.transport.is_none()
            && let syn::UseTree::Path(p) = tree
            && ADAPTERS.contains(&p.ident.to_string().as_str())
        {
            self.transport = Some(p.ident.span());
        }
        visit::visit_use_tree(self, tree);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if self.transport.is_none() && call.method == "transport" {
            self.transport = Some(call.method.span());
        }
        if call.method == "allow_unhandled"
            && let Some(turbofish) = &call.turbofish
        {
            for arg in &turbofish.args {
                if let syn::GenericArgument::Type(ty) = arg
                    && let Some(name) = last_ident(ty)
                {
                    self.handled_elsewhere.push(name);
                }
            }
        }
        visit::visit_expr_method_call(self, call);
    }
}

fn tokens(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string().replace(' ', "")
}

/// The names in `#[derive(…)]`, last path segment only (`serde::Serialize` → `Serialize`).
fn item_derives(item: &Item) -> Vec<String> {
    let attrs = match item {
        Item::Struct(s) => &s.attrs,
        Item::Enum(e) => &e.attrs,
        _ => return Vec::new(),
    };
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(last) = meta.path.segments.last() {
                names.push(last.ident.to_string());
            }
            Ok(())
        });
    }
    names
}

fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// The last identifier of a type path (`crate::orders::PlaceOrder` → `PlaceOrder`).
fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(r) => last_ident(&r.elem),
        Type::Paren(p) => last_ident(&p.elem),
        Type::Group(g) => last_ident(&g.elem),
        _ => None,
    }
}

/// A type as text with every path shortened to its last segment, so `Option<crate::Order>` and
/// `Option<Order>` compare equal.
fn normalize(ty: &Type) -> String {
    struct Shorten;
    impl syn::visit_mut::VisitMut for Shorten {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            path.leading_colon = None;
            while path.segments.len() > 1 {
                let last = path.segments.pop().map(syn::punctuated::Pair::into_value);
                path.segments = last.into_iter().collect();
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Shorten, &mut ty);
    tokens(&ty)
}

enum OkType<'a> {
    Found(&'a Type),
    NotResult,
    Unknown,
}

/// The `Ok` type of a handler's return type: `Result<T, E>` (any path ending in `Result`),
/// or `Result<T>` of an alias with a fixed error.
fn ok_type(ret: &Type) -> OkType<'_> {
    let Type::Path(p) = ret else {
        return OkType::NotResult;
    };
    let Some(last) = p.path.segments.last() else {
        return OkType::Unknown;
    };
    let name = last.ident.to_string();
    if !name.ends_with("Result") {
        // An alias such as `HandlerOutcome` may still be a `Result`; a well-known type is not.
        let known = [
            "Option", "Vec", "String", "bool", "u8", "u16", "u32", "u64", "i32", "i64", "usize",
        ];
        return if known.contains(&name.as_str()) {
            OkType::NotResult
        } else {
            OkType::Unknown
        };
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => match args.args.first() {
            Some(syn::GenericArgument::Type(ok)) => OkType::Found(ok),
            _ => OkType::Unknown,
        },
        _ => OkType::Unknown,
    }
}

/// The `&T` state a handler borrows (and the `impl` block's type for `&self`).
fn state_types(sig: &Signature, self_ty: Option<&Type>) -> Vec<Type> {
    let mut types: Vec<Type> = self_ty.into_iter().cloned().collect();
    for param in &sig.params {
        if let handler::Param::State(ty) = param {
            types.push((**ty).clone());
        }
    }
    types
}

/// The thread-unsafe type a field holds outside any lock, if any.
fn unsync(ty: &Type) -> Option<&'static str> {
    struct Find(Option<&'static str>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
            if self.0.is_some() {
                return;
            }
            let name = seg.ident.to_string();
            if ["Mutex", "RwLock", "ReentrantMutex"].contains(&name.as_str()) {
                return; // Anything inside a lock is shared safely.
            }
            self.0 = match name.as_str() {
                "RefCell" => Some("RefCell"),
                "Cell" => Some("Cell"),
                "Rc" => Some("Rc"),
                "UnsafeCell" => Some("UnsafeCell"),
                _ => None,
            };
            visit::visit_path_segment(self, seg);
        }
    }
    let mut find = Find(None);
    find.visit_type(ty);
    find.0
}
