//! `#[handler]` on an `async fn` or an `impl` block.
//!
//! For each handler it generates, inside an anonymous `const _` block: the typed handler impl
//! (`OwnedHandler<M>` for a by-value message, `EventHandler<E>` for a borrowed event), the
//! compile-time checks that make misuse a readable error at the user's span, and an
//! `inventory` descriptor so `build()` finds the handler. A free function also gets a hidden,
//! same-named marker type (a braced struct lives only in the type namespace, so it does not
//! clash with the function) through which `static_app!` can name it.
//!
//! The signature and body rules come from `catga-lints` (the same code `cargo catga lint`
//! runs): errors stop generation, warnings are reported unless `allow(…)`ed.

mod expand;

use catga_lints::Finding;
use catga_lints::rules::body::{self, Verb};
use catga_lints::rules::handler::{self as rules, HandlerArgs, Signature};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::Item;

use crate::args::{Errors, crate_path};
use crate::lint;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut findings = Vec::new();
    let args = HandlerArgs::parse(args, &mut findings);
    let mut errors = Errors::default();
    let krate = crate_path(args.krate.as_ref(), &mut errors);
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let generated = match &item {
        Item::Fn(f) => expand_fn(&krate, f, &mut findings),
        Item::Impl(i) => expand_impl(&krate, i, &mut findings),
        other => {
            findings.push(rules::misplaced(other));
            TokenStream::new()
        }
    };
    let reported = lint::emit(&findings, |rule| args.allows(rule), &mut errors);
    let errors = errors.into_compile_errors();
    quote! {
        #item
        #generated
        #errors
        #reported
    }
}

/// Scans a handler's body: warnings go to `findings`; an event published through the context
/// becomes a compile-time check that the message is not a query (CATGA050).
fn scan_body(
    krate: &TokenStream,
    sig: &Signature,
    block: &syn::Block,
    findings: &mut Vec<Finding>,
) -> TokenStream {
    let facts = body::scan(block, sig.context.as_ref());
    findings.extend(facts.findings);
    let msg = &sig.message;
    let checks = facts
        .dispatches
        .iter()
        .filter(|d| d.through_context && d.verb == Verb::Publish)
        .map(|d| {
            // The alias carries the call's span, so an unsatisfied bound is reported there.
            let alias = quote_spanned!(d.span=> __CatgaMessage);
            quote_spanned! {d.span=>
                const _: () = #krate::__private::assert_side_effects_allowed::<#alias>();
            }
        });
    let checks: Vec<TokenStream> = checks.collect();
    if checks.is_empty() {
        return TokenStream::new();
    }
    quote! {
        const _: () = {
            #[allow(dead_code)]
            type __CatgaMessage = #msg;
            #(#checks)*
        };
    }
}

fn expand_fn(krate: &TokenStream, f: &syn::ItemFn, findings: &mut Vec<Finding>) -> TokenStream {
    let Some(sig) = rules::analyze(&f.sig, false, findings) else {
        return TokenStream::new();
    };
    let checks = scan_body(krate, &sig, &f.block, findings);
    let ident = &f.sig.ident;
    let vis = &f.vis;
    let marker = quote!(#ident);
    let body = expand::handler(
        krate,
        &expand::Target {
            marker: &marker,
            callee: quote!(#ident),
            name: ident.to_string(),
            self_ty: None,
            sig: &sig,
        },
    );
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code, missing_docs, unreachable_pub)]
        #vis struct #ident {}

        const _: () = { #body #checks };
    }
}

fn expand_impl(
    krate: &TokenStream,
    block: &syn::ItemImpl,
    findings: &mut Vec<Finding>,
) -> TokenStream {
    let errors_before = count_errors(findings);
    let methods = rules::analyze_impl(block, findings);
    if count_errors(findings) != errors_before {
        return TokenStream::new();
    }
    let self_ty = &*block.self_ty;
    let type_name = quote!(#self_ty).to_string().replace(' ', "");
    let marker = quote!(#self_ty);
    let mut bodies = Vec::new();
    for (method, sig) in methods {
        let checks = scan_body(krate, &sig, &method.block, findings);
        let method_ident = &sig.ident;
        let generated = expand::handler(
            krate,
            &expand::Target {
                marker: &marker,
                callee: quote!(<#self_ty>::#method_ident),
                name: format!("{type_name}::{method_ident}"),
                self_ty: Some(self_ty),
                sig: &sig,
            },
        );
        bodies.push(quote!(#generated #checks));
    }
    quote! { const _: () = { #(#bodies)* }; }
}

fn count_errors(findings: &[Finding]) -> usize {
    findings
        .iter()
        .filter(|f| f.level() == catga_lints::Level::Error)
        .count()
}
