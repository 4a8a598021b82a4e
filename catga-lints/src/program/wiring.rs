//! How a file wires the application: transports used, requests handled elsewhere.

use proc_macro2::Span;
use syn::visit::{self, Visit};

use super::syntax::last_ident;

/// What a file says about how the application is wired: the first use of a catga transport
/// adapter (`catga_nats`, `catga_redis`, …, or a `.transport(…)` call on a builder), and the
/// requests declared handled by another process (`.allow_unhandled::<M>()`).
#[derive(Default)]
pub(super) struct Wiring {
    pub(super) transport: Option<Span>,
    pub(super) handled_elsewhere: Vec<String>,
}

pub(super) const ADAPTERS: &[&str] = &["catga_nats", "catga_redis", "catga_postgres"];

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
