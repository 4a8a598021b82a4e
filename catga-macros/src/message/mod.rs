//! `#[command]`, `#[query]`, `#[event]`: parse the arguments and the type, check them, then
//! implement the message traits and submit a descriptor.
//!
//! [`expand`] reads top to bottom: parse, check (every finding collected), generate. Each
//! generated impl is one function of [`generate`]; a rejected shape gets
//! [`stand_in`](stand_in::stand_in) impls instead.

mod generate;
mod stand_in;

use catga_lints::Kind;
use catga_lints::rules::message::{self as rules, MessageArgs};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Item;

use crate::args::{Errors, crate_path};
use crate::lint;
use generate::Message;

pub fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };

    // Check: argument and shape findings, the `crate` path.
    let mut findings = Vec::new();
    let args = MessageArgs::parse(kind, args, Span::call_site(), &mut findings);
    let krate = crate_path(args.krate.as_ref(), &mut errors);
    let ident = rules::check_shape(kind, &item, &mut findings);
    if ident.is_some() {
        rules::check_size(&item, &args, &mut findings);
    }
    let warnings = lint::emit(&findings, |rule| args.allows(rule), &mut errors);

    // Generate. Argument errors are reported, but the message is still implemented (with
    // defaults for what was wrong), so its uses add no cascade of "not a message" errors; a
    // rejected shape (generic, borrowing) gets stand-in impls for the same reason.
    let generated = match ident {
        Some(ident) => Message::new(kind, &krate, ident, &args).impls(),
        None => stand_in::stand_in(kind, &krate, &item, &args),
    };
    let errors = errors.into_compile_errors();
    quote! {
        #item
        #warnings
        #errors
        #generated
    }
}
