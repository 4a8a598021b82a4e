//! The rules' implementations: each function here is called both by the macros (at expansion)
//! and by `cargo catga lint` (over whole crates), so a rule has one implementation.

pub mod body;
pub mod duration;
mod external;
pub mod handler;
pub mod message;
pub mod naming;

/// The candidate closest to a misspelt `given`, if one is close enough to be what was meant:
/// at most two edits away (a swap, a missing or extra letter) and fewer edits than letters,
/// or alike by Jaro–Winkler similarity (≥ 0.85, which favours a shared start: `retries` →
/// `retry`).
pub fn closest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .filter_map(|c| {
            let edits = strsim::damerau_levenshtein(given, c);
            let alike = strsim::jaro_winkler(given, c);
            let near = (edits <= 2 && edits < c.len().min(given.len())) || alike >= 0.85;
            near.then_some((edits, c))
        })
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, c)| *c)
}

/// `crate = "…"` of any macro: the path, as a string literal (validated as a path where it is
/// used, by the macros). A value written without quotes is one finding that says to quote it,
/// and is skipped, so parsing goes on with the next argument.
pub fn quoted_crate(
    meta: &syn::meta::ParseNestedMeta<'_>,
    findings: &mut Vec<crate::finding::Finding>,
) -> syn::Result<Option<syn::LitStr>> {
    let value = meta.value()?;
    if value.peek(syn::LitStr) {
        return Ok(Some(value.parse()?));
    }
    let given: syn::Expr = value.parse()?;
    let text = quote::ToTokens::to_token_stream(&given)
        .to_string()
        .replace(' ', "");
    findings.push(
        crate::finding::Finding::new(
            &crate::catalog::UNKNOWN_ARGUMENT,
            syn::spanned::Spanned::span(&given),
            "`crate` takes the path in quotes",
        )
        .with_help(format!("write `crate = \"{text}\"`")),
    );
    Ok(None)
}

/// The help for an unknown argument: the closest valid one if any, then the whole list.
pub fn did_you_mean(given: &str, valid: &[&str]) -> String {
    let list = valid
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(given, valid) {
        Some(near) => format!("did you mean `{near}`? valid arguments are {list}"),
        None => format!("valid arguments are {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn a_misspelt_argument_finds_what_was_meant() {
        let valid = ["output", "name", "local", "idempotent", "timeout", "retry"];
        assert_eq!(closest("ouput", &valid), Some("output"));
        assert_eq!(closest("outptu", &valid), Some("output"));
        assert_eq!(closest("retries", &valid), Some("retry"));
        assert_eq!(closest("idempotnet", &valid), Some("idempotent"));
        assert_eq!(closest("timout", &valid), Some("timeout"));
        assert_eq!(closest("cache", &valid), None);
        assert_eq!(closest("x", &valid), None);
        assert_eq!(closest("timeout", &["crate", "allow"]), None);
        assert_eq!(closest("alow", &["crate", "allow"]), Some("allow"));
    }
}
