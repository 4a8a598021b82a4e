//! `#[handler]` on an `async fn` or an `impl` block.
//!
//! For each handler it generates, inside an anonymous `const _` block: the typed handler impl
//! (`OwnedHandler<M>` for a by-value message, `EventHandler<E>` for a borrowed event), the
//! compile-time checks that make misuse a readable error at the user's span, and an
//! `inventory` descriptor so `build()` finds the handler. A free function also gets a hidden,
//! same-named marker type (a braced struct lives only in the type namespace, so it does not
//! clash with the function) through which `static_app!` can name it.

mod expand;
mod signature;

use std::collections::HashMap;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{ImplItem, Item, LitStr};

use crate::args::{Errors, crate_path};

struct Args {
    krate: Option<LitStr>,
}

fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args { krate: None };
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            args.krate = Some(meta.value()?.parse()?);
        } else {
            let path = &meta.path;
            errors.spanned(
                path,
                format!(
                    "unknown `#[handler]` argument `{}`\n  help: the only argument is `crate = \"…\"`",
                    quote!(#path).to_string().replace(' ', "")
                ),
            );
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    args
}

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = parse_args(args, &mut errors);
    let krate = crate_path(args.krate.as_ref(), &mut errors);
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let generated = match &item {
        Item::Fn(f) => expand_fn(&krate, f, &mut errors),
        Item::Impl(i) => expand_impl(&krate, i, &mut errors),
        other => {
            errors.spanned(
                other,
                "`#[handler]` goes on an `async fn` or on an `impl` block of handler methods",
            );
            TokenStream::new()
        }
    };
    let errors = errors.into_compile_errors();
    quote! {
        #item
        #generated
        #errors
    }
}

fn expand_fn(krate: &TokenStream, f: &syn::ItemFn, errors: &mut Errors) -> TokenStream {
    let Some(sig) = signature::analyze(&f.sig, false, errors) else {
        return TokenStream::new();
    };
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

        const _: () = { #body };
    }
}

fn expand_impl(krate: &TokenStream, block: &syn::ItemImpl, errors: &mut Errors) -> TokenStream {
    if let Some((_, path, _)) = &block.trait_ {
        errors.spanned(
            path,
            "`#[handler]` goes on an inherent `impl` block, not a trait impl\n  \
             help: write `#[handler] impl MyService { async fn …(&self, cmd: MyCommand) … }`",
        );
        return TokenStream::new();
    }
    if !block.generics.params.is_empty() {
        errors.spanned(
            &block.generics.params,
            "a `#[handler] impl` block cannot be generic: its handlers are registered for concrete types\n  \
             help: implement the handlers on a concrete type",
        );
        return TokenStream::new();
    }
    let self_ty = &*block.self_ty;
    let type_name = self_ty.to_token_stream().to_string().replace(' ', "");
    let marker = quote!(#self_ty);
    let mut bodies = Vec::new();
    let mut seen: HashMap<String, syn::Ident> = HashMap::new();
    for item in &block.items {
        let ImplItem::Fn(method) = item else {
            errors.spanned(
                item,
                "only handler methods may appear in a `#[handler] impl` block\n  \
                 help: move constants, types and helper functions into a separate `impl` block",
            );
            continue;
        };
        let Some(sig) = signature::analyze(&method.sig, true, errors) else {
            continue;
        };
        let key = sig.message.to_token_stream().to_string();
        if let Some(first) = seen.get(&key) {
            errors.spanned(
                &sig.message,
                format!(
                    "`{}` already has a handler in this block (`{first}`)\n  help: keep one handler per message type",
                    key.replace(' ', "")
                ),
            );
            continue;
        }
        seen.insert(key, sig.ident.clone());
        let method_ident = &sig.ident;
        bodies.push(expand::handler(
            krate,
            &expand::Target {
                marker: &marker,
                callee: quote!(<#self_ty>::#method_ident),
                name: format!("{type_name}::{method_ident}"),
                self_ty: Some(self_ty),
                sig: &sig,
            },
        ));
    }
    if !errors.is_empty() {
        return TokenStream::new();
    }
    quote! { const _: () = { #(#bodies)* }; }
}
