//! Collects a file's declarations into the [`Program`](super::Program), running the
//! per-item rules as it goes.

use syn::spanned::Spanned;
use syn::{Attribute, Item, Meta, Type};

use crate::finding::Finding;
use crate::kind::Kind;
use crate::rules::body;
use crate::rules::handler::{self, HandlerArgs, Signature};
use crate::rules::message::{self, MessageArgs};

use super::syntax::{item_derives, state_types, tokens};
use super::{HandlerDecl, MessageDecl, Program, StructDecl};

/// Walks a file's items.
pub(super) struct Collect<'p> {
    pub(super) program: &'p mut Program,
    pub(super) source: usize,
    /// The module being walked, when the file's module path is known.
    pub(super) module: Option<Vec<String>>,
}

/// The attribute named `name` (the last path segment: `#[handler]`, `#[catga_core::handler]`).
pub(super) fn find_attr<'a>(
    attrs: &'a [Attribute],
    names: &[&str],
) -> Option<(&'a Attribute, String)> {
    attrs.iter().find_map(|a| {
        let last = a.path().segments.last()?.ident.to_string();
        names.contains(&last.as_str()).then_some((a, last))
    })
}

/// The tokens inside an attribute's parentheses (empty for `#[handler]`).
pub(super) fn attr_args(attr: &Attribute) -> proc_macro2::TokenStream {
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

    pub(super) fn items(&mut self, items: &[Item]) {
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
        if let Item::Use(u) = item
            && let Some(module) = &self.module
        {
            self.program.paths.use_tree(module, &u.tree);
        }
        if let Item::Mod(m) = item
            && let Some((_, items)) = &m.content
        {
            if let Some(module) = &mut self.module {
                module.push(m.ident.to_string());
                self.program.paths.module(module);
            }
            self.items(items);
            if let Some(module) = &mut self.module {
                module.pop();
            }
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
            let path = self
                .module
                .as_ref()
                .map(|module| self.program.paths.message(module, &name));
            self.program.messages.push(MessageDecl {
                source: self.source,
                kind,
                path,
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
            module: self.module.clone(),
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
