//! Attribute arguments shared by the macros, and error collection.

use proc_macro2::TokenStream;
use quote::quote;
use syn::LitStr;

/// Collects every error before anything is generated, like serde's `Ctxt`.
#[derive(Default)]
pub struct Errors {
    all: Option<syn::Error>,
    count: usize,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        self.count += 1;
        match &mut self.all {
            Some(all) => all.combine(error),
            None => self.all = Some(error),
        }
    }

    /// A `catga-lints` finding of error level, worded with its rule's id and help.
    pub fn finding(&mut self, finding: &catga_lints::Finding) {
        self.push(syn::Error::new(finding.span, finding.text()));
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The errors as `compile_error!`s, emitted instead of (or beside) the generated code.
    pub fn into_compile_errors(self) -> TokenStream {
        self.all.map(|e| e.to_compile_error()).unwrap_or_default()
    }
}

/// The path of the runtime crate: `::catga_core`, or what `crate = "…"` says.
pub fn crate_path(given: Option<&LitStr>, errors: &mut Errors) -> TokenStream {
    match given {
        None => quote!(::catga_core),
        Some(lit) => match lit.parse::<syn::Path>() {
            Ok(path) => quote!(#path),
            Err(_) => {
                errors.spanned(
                    lit,
                    "`crate` must be a path\n  help: write e.g. `crate = \"::my_catga\"`",
                );
                quote!(::catga_core)
            }
        },
    }
}
