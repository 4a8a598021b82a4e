//! Message declarations (CATGA011–CATGA015, CATGA062): the arguments of `#[command]`,
//! `#[query]` and `#[event]`, the declared type's shape, and its size budget.

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{Expr, Fields, Item, Lit, LitInt, LitStr, Type};

use crate::catalog::{self, Allow, Rule};
use crate::finding::Finding;
use crate::kind::Kind;
use crate::rules::duration::parse_millis;
use crate::rules::handler::{parse_allow, skip_value, tokens_text};

/// The arguments each message attribute takes, in the order the docs list them.
#[rustfmt::skip]
const COMMAND_ARGUMENTS: &[&str] = &[
    "output", "name", "local", "idempotent", "timeout", "retry", "rate_limit", "concurrency",
    "bulkhead", "skip", "allow", "crate",
];
#[rustfmt::skip]
const QUERY_ARGUMENTS: &[&str] = &[
    "output", "name", "local", "timeout", "retry", "rate_limit", "concurrency", "bulkhead",
    "cache_ttl", "invalidated_by", "skip", "allow", "crate",
];
#[rustfmt::skip]
const EVENT_ARGUMENTS: &[&str] = &[
    "name", "local", "timeout", "retry", "rate_limit", "concurrency", "bulkhead", "skip",
    "allow", "crate",
];

/// Fields above which a message is over budget (CATGA062).
pub const MAX_FIELDS: usize = 64;
/// Bytes of inline arrays above which a message is over budget (CATGA062).
pub const MAX_INLINE_ARRAY_BYTES: u64 = 4096;

/// The behaviours `skip(…)` names, in the order of `catga_core::policy::Skip`'s bits (a test
/// in catga-core keeps the two in step).
pub const SKIP_NAMES: &[&str] = &[
    "tracing",
    "validation",
    "timeout",
    "retry",
    "circuit_breaker",
    "rate_limit",
    "concurrency_limit",
    "idempotency",
    "caching",
    "dead_letter",
];

/// The arguments of a message attribute.
#[derive(Clone, Debug, Default)]
pub struct MessageArgs {
    /// `output = T`.
    pub output: Option<Type>,
    /// `name = "…"`: the wire name.
    pub name: Option<LitStr>,
    /// `crate = "…"`.
    pub krate: Option<LitStr>,
    /// `local`: never crosses a process.
    pub local: bool,
    /// `idempotent`: safe to handle twice (read by the idempotency behaviour and CATGA061).
    pub idempotent: bool,
    /// `timeout = "…"`, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `retry = n`.
    pub retry: Option<u32>,
    /// `allow(rule, …)`.
    pub allow: Vec<&'static Rule>,
    /// `skip(behaviour, …)`, as a bit set in [`SKIP_NAMES`] order.
    pub skip: u16,
    /// `rate_limit = "100/s"`: (permits, period in milliseconds).
    pub rate_limit: Option<(u32, u64)>,
    /// `concurrency = n`.
    pub concurrency: Option<u32>,
    /// `bulkhead = "name"`: the concurrency group this message shares.
    pub bulkhead: Option<LitStr>,
    /// `cache_ttl = "30s"` (queries), in milliseconds.
    pub cache_ttl_ms: Option<u64>,
    /// `invalidated_by(EventA, EventB)` (queries).
    pub invalidated_by: Vec<Type>,
}

impl MessageArgs {
    /// Parses a message attribute's arguments, reporting every problem. `attr` is the span a
    /// missing argument is reported at: the attribute (`Span::call_site()` in a macro).
    pub fn parse(
        kind: Kind,
        tokens: TokenStream,
        attr_span: Span,
        findings: &mut Vec<Finding>,
    ) -> MessageArgs {
        let mut args = MessageArgs::default();
        let attr = kind.attr();
        let parser = syn::meta::parser(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "output" if kind == Kind::Event => {
                    let _: Type = meta.value()?.parse()?;
                    findings.push(
                        Finding::new(
                            &catalog::MESSAGE_OUTPUT_KIND,
                            meta.path.span(),
                            "events have no reply, so `output` is not allowed here",
                        )
                        .with_help(
                            "remove `output = …`, or make the message a `#[command(output = …)]`",
                        ),
                    );
                }
                "output" => args.output = Some(meta.value()?.parse()?),
                "name" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if let Some(problem) = wire_name_problem(&lit.value()) {
                        findings.push(Finding::new(
                            &catalog::INVALID_WIRE_NAME,
                            lit.span(),
                            problem,
                        ));
                    }
                    args.name = Some(lit);
                }
                // Validated where it is used: `catga-macros`' `crate_path`, one place for every macro.
                "crate" => args.krate = super::quoted_crate(&meta, findings)?,
                "local" => args.local = true,
                "idempotent" if kind == Kind::Command => args.idempotent = true,
                "timeout" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match parse_millis(&lit.value()) {
                        Ok(ms) => args.timeout_ms = Some(ms),
                        Err(why) => findings.push(
                            Finding::new(
                                &catalog::INVALID_POLICY,
                                lit.span(),
                                format!("invalid timeout: {why}"),
                            )
                            .with_help("write e.g. `timeout = \"250ms\"`, `\"5s\"`, `\"2m\"`"),
                        ),
                    }
                }
                "retry" => {
                    let lit: LitInt = meta.value()?.parse()?;
                    match lit.base10_parse::<u32>() {
                        Ok(0) | Err(_) => findings.push(
                            Finding::new(
                                &catalog::INVALID_POLICY,
                                lit.span(),
                                "`retry` is the number of attempts in all and must be at least 1",
                            )
                            .with_help("write `retry = 1` to never retry this message"),
                        ),
                        Ok(n) => args.retry = Some(n),
                    }
                }
                "allow" => parse_allow(&meta, Allow::Message, attr, &mut args.allow, findings)?,
                "skip" => meta.parse_nested_meta(|inner| {
                    let name = tokens_text(&inner.path);
                    match SKIP_NAMES.iter().position(|n| *n == name) {
                        Some(bit) => args.skip |= 1 << bit,
                        None => findings.push(
                            Finding::new(
                                &catalog::UNKNOWN_ARGUMENT,
                                inner.path.span(),
                                format!("`{name}` is not a behaviour `skip(…)` knows"),
                            )
                            .with_help(format!("name one of {}", SKIP_NAMES.join(", "))),
                        ),
                    }
                    Ok(())
                })?,
                "rate_limit" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match parse_rate(&lit.value()) {
                        Ok(rate) => args.rate_limit = Some(rate),
                        Err(why) => findings.push(
                            Finding::new(&catalog::INVALID_POLICY, lit.span(), format!("invalid rate limit: {why}"))
                                .with_help("write permits per period, e.g. `rate_limit = \"100/s\"`, `\"5/m\"`, `\"20/250ms\"`"),
                        ),
                    }
                }
                "concurrency" => {
                    let lit: LitInt = meta.value()?.parse()?;
                    match lit.base10_parse::<u32>() {
                        Ok(0) | Err(_) => findings.push(
                            Finding::new(
                                &catalog::INVALID_POLICY,
                                lit.span(),
                                "`concurrency` is the most dispatches of this message in flight at once and must be at least 1",
                            )
                            .with_help("write e.g. `concurrency = 8`"),
                        ),
                        Ok(n) => args.concurrency = Some(n),
                    }
                }
                "bulkhead" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    if let Some(problem) = wire_name_problem(&lit.value()) {
                        findings.push(
                            Finding::new(
                                &catalog::INVALID_POLICY,
                                lit.span(),
                                format!("invalid bulkhead name: {problem}"),
                            )
                            .with_help("name the group, e.g. `bulkhead = \"database\"`"),
                        );
                    }
                    args.bulkhead = Some(lit);
                }
                "cache_ttl" | "invalidated_by" if kind != Kind::Query => {
                    findings.push(
                        Finding::new(
                            &catalog::INVALID_POLICY,
                            meta.path.span(),
                            format!("`{key}` is for queries: only their replies can be cached"),
                        )
                        .with_help("remove it, or make the message a `#[query(output = …)]`"),
                    );
                    skip_value(&meta)?;
                }
                "cache_ttl" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    match parse_millis(&lit.value()) {
                        Ok(ms) => args.cache_ttl_ms = Some(ms),
                        Err(why) => findings.push(
                            Finding::new(
                                &catalog::INVALID_POLICY,
                                lit.span(),
                                format!("invalid cache ttl: {why}"),
                            )
                            .with_help("write e.g. `cache_ttl = \"30s\"`"),
                        ),
                    }
                }
                "invalidated_by" => meta.parse_nested_meta(|inner| {
                    args.invalidated_by.push(Type::Path(syn::TypePath {
                        qself: None,
                        path: inner.path.clone(),
                    }));
                    Ok(())
                })?,
                _ => {
                    let valid = match kind {
                        Kind::Command => COMMAND_ARGUMENTS,
                        Kind::Query => QUERY_ARGUMENTS,
                        Kind::Event => EVENT_ARGUMENTS,
                    };
                    let given = tokens_text(&meta.path);
                    findings.push(
                        Finding::new(
                            &catalog::UNKNOWN_ARGUMENT,
                            meta.path.span(),
                            format!("unknown `#[{attr}]` argument `{given}`"),
                        )
                        .with_help(super::did_you_mean(&given, valid)),
                    );
                    if super::closest(&given, valid) == Some("output") {
                        // Recover as rustc does: take it as the `output` it was meant to be,
                        // so the one error above is the only one (a handler returning that
                        // type would otherwise fail to match `()`).
                        match meta.value().and_then(|v| v.parse()) {
                            Ok(ty) => args.output = Some(ty),
                            Err(_) => skip_value(&meta)?,
                        }
                    } else {
                        skip_value(&meta)?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
            findings.push(Finding::new(
                &catalog::UNKNOWN_ARGUMENT,
                e.span(),
                e.to_string(),
            ));
        }
        if kind == Kind::Query && args.output.is_none() {
            findings.push(
                Finding::new(
                    &catalog::MESSAGE_OUTPUT_KIND,
                    attr_span,
                    "a query must declare what it returns",
                )
                .with_help("write `#[query(output = T)]`"),
            );
        }
        args
    }

    /// Whether findings of `rule` are silenced on this message.
    pub fn allows(&self, rule: &Rule) -> bool {
        self.allow.iter().any(|r| r.id == rule.id)
    }
}

/// Parses `"100/s"`, `"5/m"`, `"1/h"`, `"20/250ms"` into (permits, period in milliseconds).
pub fn parse_rate(text: &str) -> Result<(u32, u64), String> {
    let (count, period) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not `permits/period`"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a whole number of permits", count.trim()))?;
    if count == 0 {
        return Err("a rate of zero permits would refuse everything".to_string());
    }
    let period = period.trim();
    // `s`, `m`, `h` alone mean one of that unit.
    let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
        period.to_string()
    } else {
        format!("1{period}")
    };
    Ok((count, parse_millis(&period)?))
}

/// Why a wire name is invalid, if it is.
pub fn wire_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a wire name cannot be empty");
    }
    if name.len() > 200 {
        return Some("a wire name must be at most 200 bytes");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/');
    if !name.chars().all(ok) {
        return Some("a wire name may not contain spaces or other special characters");
    }
    None
}

/// Checks the item a message attribute is on: a concrete, owned struct or enum (CATGA011).
/// Returns its name when it is one.
pub fn check_shape<'a>(
    kind: Kind,
    item: &'a Item,
    findings: &mut Vec<Finding>,
) -> Option<&'a syn::Ident> {
    let (ident, generics) = match item {
        Item::Struct(s) => (&s.ident, &s.generics),
        Item::Enum(e) => (&e.ident, &e.generics),
        other => {
            findings.push(Finding::new(
                &catalog::MESSAGE_SHAPE,
                other.span(),
                format!("`#[{}]` goes on a struct or an enum", kind.attr()),
            ));
            return None;
        }
    };
    if let Some(lt) = generics.lifetimes().next() {
        findings.push(
            Finding::new(
                &catalog::MESSAGE_SHAPE,
                lt.span(),
                "a message cannot borrow: it may cross tasks, threads and processes",
            )
            .with_help(
                "own the data instead (`String` rather than `&str`, `Vec<T>` rather than `&[T]`)",
            ),
        );
        return None;
    }
    if !generics.params.is_empty() {
        findings.push(
            Finding::new(
                &catalog::MESSAGE_SHAPE,
                generics.params.span(),
                "a message cannot be generic: each message type needs one wire name and one dispatch slot",
            )
            .with_help("declare one concrete type per message"),
        );
        return None;
    }
    Some(ident)
}

/// Checks the size budget (CATGA062): field count and inline arrays.
pub fn check_size(item: &Item, args: &MessageArgs, findings: &mut Vec<Finding>) {
    if args.allows(&catalog::MESSAGE_TOO_LARGE) {
        return;
    }
    let all_fields: Vec<&Fields> = match item {
        Item::Struct(s) => vec![&s.fields],
        Item::Enum(e) => e.variants.iter().map(|v| &v.fields).collect(),
        _ => return,
    };
    for fields in all_fields {
        if fields.len() > MAX_FIELDS {
            findings.push(Finding::new(
                &catalog::MESSAGE_TOO_LARGE,
                fields.span(),
                format!(
                    "the message has {} fields, over the budget of {MAX_FIELDS}",
                    fields.len()
                ),
            ));
        }
        for field in fields {
            if let Some(bytes) = inline_array_bytes(&field.ty)
                && bytes > MAX_INLINE_ARRAY_BYTES
            {
                findings.push(Finding::new(
                    &catalog::MESSAGE_TOO_LARGE,
                    field.ty.span(),
                    format!(
                        "this field holds an inline array of at least {bytes} bytes, over the budget of {MAX_INLINE_ARRAY_BYTES}"
                    ),
                ));
            }
        }
    }
}

/// The bytes a type holds in inline arrays, when it holds any (a lower bound: an element
/// type that is not a primitive counts as one byte).
fn inline_array_bytes(ty: &Type) -> Option<u64> {
    match ty {
        Type::Array(array) => {
            let len = const_len(&array.len)?;
            let element =
                inline_array_bytes(&array.elem).unwrap_or_else(|| primitive_size(&array.elem));
            Some(len.saturating_mul(element))
        }
        Type::Tuple(tuple) => {
            let sizes: Vec<u64> = tuple.elems.iter().filter_map(inline_array_bytes).collect();
            (!sizes.is_empty()).then(|| sizes.iter().sum())
        }
        Type::Paren(inner) => inline_array_bytes(&inner.elem),
        Type::Group(inner) => inline_array_bytes(&inner.elem),
        _ => None,
    }
}

/// An array length written as an integer literal or a product/sum of them.
fn const_len(expr: &Expr) -> Option<u64> {
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => int.base10_parse().ok(),
            _ => None,
        },
        Expr::Binary(bin) => {
            let (l, r) = (const_len(&bin.left)?, const_len(&bin.right)?);
            match bin.op {
                syn::BinOp::Mul(_) => l.checked_mul(r),
                syn::BinOp::Add(_) => l.checked_add(r),
                syn::BinOp::Shl(_) => u32::try_from(r).ok().and_then(|r| l.checked_shl(r)),
                _ => None,
            }
        }
        Expr::Paren(p) => const_len(&p.expr),
        Expr::Group(g) => const_len(&g.expr),
        _ => None,
    }
}

fn primitive_size(ty: &Type) -> u64 {
    let Type::Path(path) = ty else { return 1 };
    let Some(ident) = path.path.get_ident() else {
        return 1;
    };
    match ident.to_string().as_str() {
        "u16" | "i16" => 2,
        "u32" | "i32" | "f32" | "char" => 4,
        "u64" | "i64" | "f64" | "usize" | "isize" => 8,
        "u128" | "i128" => 16,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_findings(src: &str) -> usize {
        let item: Item = syn::parse_str(src).unwrap();
        let mut findings = Vec::new();
        check_size(&item, &MessageArgs::default(), &mut findings);
        findings.len()
    }

    #[test]
    fn arrays_are_measured() {
        assert_eq!(size_findings("struct A { b: [u8; 4096] }"), 0);
        assert_eq!(size_findings("struct A { b: [u8; 4097] }"), 1);
        assert_eq!(size_findings("struct A { b: [u64; 1024] }"), 1);
        assert_eq!(size_findings("struct A { b: [[u8; 64]; 128] }"), 1);
        assert_eq!(size_findings("struct A { b: [u8; 4 * 1024 + 1] }"), 1);
        assert_eq!(size_findings("struct A { b: Vec<u8> }"), 0);
        assert_eq!(size_findings("struct A([u32; 2048]);"), 1);
    }

    #[test]
    fn rates_parse_with_or_without_a_period_count() {
        assert_eq!(parse_rate("100/s"), Ok((100, 1_000)));
        assert_eq!(parse_rate("5/m"), Ok((5, 60_000)));
        assert_eq!(parse_rate(" 20 / 250ms "), Ok((20, 250)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("x/s").is_err());
        assert!(parse_rate("10/fortnight").is_err());
    }

    #[test]
    fn fields_are_counted() {
        let fields: Vec<String> = (0..65).map(|i| format!("f{i}: u8")).collect();
        assert_eq!(
            size_findings(&format!("struct A {{ {} }}", fields.join(", "))),
            1
        );
        assert_eq!(
            size_findings(&format!("struct A {{ {} }}", fields[..64].join(", "))),
            0
        );
    }
}
