//! Reporting `catga-lints` findings from a macro: errors as `compile_error!` at the finding's
//! span, warnings as a `deprecated` warning there.
//!
//! Stable Rust has no way for a proc macro to emit a warning; using a deprecated item does. The
//! generated item is named after the rule (`CATGA030_unwrap_in_handler`) and its note carries
//! the message, the fix and how to silence it, so the warning reads:
//!
//! ```text
//! warning: use of deprecated unit struct `…::CATGA030_unwrap_in_handler`: `unwrap` in a handler can panic
//!   help: propagate the error with `?` …
//! ```

use catga_lints::Finding;
use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

/// A warning at the finding's span.
pub fn warning(finding: &Finding) -> TokenStream {
    let name = format!("{}_{}", finding.rule.id, finding.rule.name);
    let item = Ident::new(&name, Span::call_site());
    // The use carries the user's span, so rustc reports it there (and, being the user's span,
    // not one from a macro expansion, does report it).
    let used = Ident::new(&name, finding.span);
    let note = finding.text();
    quote! {
        const _: () = {
            #[deprecated(note = #note)]
            #[allow(non_camel_case_types)]
            struct #item;
            let _ = #used;
        };
    }
}

/// Reports `findings`: errors into `errors`, warnings (unless `allowed`) as returned tokens.
pub fn emit(
    findings: &[Finding],
    allowed: impl Fn(&catga_lints::Rule) -> bool,
    errors: &mut crate::args::Errors,
) -> TokenStream {
    let mut warnings = TokenStream::new();
    for finding in findings {
        if finding.level() == catga_lints::Level::Error {
            errors.finding(finding);
        } else if !allowed(finding.rule) {
            warnings.extend(warning(finding));
        }
    }
    warnings
}
