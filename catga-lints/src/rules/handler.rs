//! Handler shape (CATGA001–CATGA009, CATGA054 within one `impl` block): reads a handler's
//! signature and says which parameter is the message, which the context, which state.
//!
//! Roles come from each parameter's form, never from names: the message is the one parameter
//! taken by value (or, if none is, the first borrowed one, which makes it an event handler);
//! `&Context` is the context; every other `&T` is state. `#[handler]` uses the [`Signature`]
//! to generate code; `cargo catga lint` uses the findings.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ImplItem, ItemImpl, ReturnType, Type};

use crate::catalog::{self, Allow, Rule};
use crate::finding::Finding;

/// One parameter of the user's function, in declared order.
#[derive(Clone, Debug)]
pub enum Param {
    /// The message.
    Message,
    /// `&Context`.
    Context,
    /// `&T` state.
    State(Box<Type>),
}

/// How the handler takes its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taking {
    /// By value: a request, or an event the handler owns (needs `Clone`).
    Value,
    /// By reference: an event.
    Ref,
}

/// A handler's signature, understood.
#[derive(Clone, Debug)]
pub struct Signature {
    /// The function's name.
    pub ident: Ident,
    /// Whether it takes `&self` (a method of a `#[handler] impl` block).
    pub receiver: bool,
    /// Every parameter after `self`, in order.
    pub params: Vec<Param>,
    /// The message type.
    pub message: Type,
    /// By value or by reference.
    pub taking: Taking,
    /// The declared return type.
    pub ret: Type,
    /// The name the `&Context` parameter is bound to, if any (to recognise `ctx.publish`).
    pub context: Option<Ident>,
}

/// The arguments of `#[handler(…)]`.
#[derive(Clone, Debug, Default)]
pub struct HandlerArgs {
    /// `crate = "path"`: a renamed `catga_core`.
    pub krate: Option<syn::LitStr>,
    /// `allow(rule, …)`: warnings silenced for this handler.
    pub allow: Vec<&'static Rule>,
}

impl HandlerArgs {
    /// Parses the attribute's arguments, reporting unknown ones and unknown rule names.
    pub fn parse(tokens: TokenStream, findings: &mut Vec<Finding>) -> HandlerArgs {
        let mut args = HandlerArgs::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("crate") {
                args.krate = super::quoted_crate(&meta, findings)?;
            } else if meta.path.is_ident("allow") {
                parse_allow(&meta, Allow::Handler, "handler", &mut args.allow, findings)?;
            } else {
                let path = &meta.path;
                let given = tokens_text(path);
                let help = match super::closest(&given, &["crate", "allow"]) {
                    Some(near) => format!(
                        "did you mean `{near}`? the arguments are `crate = \"…\"` and `allow(rule, …)`"
                    ),
                    None => "the arguments are `crate = \"…\"` and `allow(rule, …)`".to_string(),
                };
                findings.push(
                    Finding::new(
                        &catalog::UNKNOWN_ARGUMENT,
                        path.span(),
                        format!("unknown `#[handler]` argument `{given}`"),
                    )
                    .with_help(help),
                );
                skip_value(&meta)?;
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
        args
    }

    /// Whether findings of `rule` are silenced here.
    pub fn allows(&self, rule: &Rule) -> bool {
        self.allow.iter().any(|r| r.id == rule.id)
    }
}

/// Parses `allow(a, b)` into rules that can be silenced at `place`.
pub(crate) fn parse_allow(
    meta: &syn::meta::ParseNestedMeta<'_>,
    place: Allow,
    attr: &str,
    allowed: &mut Vec<&'static Rule>,
    findings: &mut Vec<Finding>,
) -> syn::Result<()> {
    meta.parse_nested_meta(|inner| {
        let name = tokens_text(&inner.path);
        match catalog::find(&name) {
            Some(rule) if rule.allow == place => allowed.push(rule),
            Some(rule) => findings.push(
                Finding::new(
                    &catalog::UNKNOWN_ARGUMENT,
                    inner.path.span(),
                    format!("`{name}` ({}) cannot be silenced on `#[{attr}]`", rule.id),
                )
                .with_help(rule.silence()),
            ),
            None => findings.push(
                Finding::new(
                    &catalog::UNKNOWN_ARGUMENT,
                    inner.path.span(),
                    format!("unknown rule `{name}` in `allow(…)`"),
                )
                .with_help(unknown_rule_help(&name)),
            ),
        }
        Ok(())
    })
}

/// Skips an unknown argument's value, if any, so parsing goes on and reports later errors too.
pub(crate) fn skip_value(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|inner| skip_value(&inner));
    }
    Ok(())
}

/// A path or type as the user wrote it, without spaces.
pub(crate) fn tokens_text(tokens: &impl ToTokens) -> String {
    tokens.to_token_stream().to_string().replace(' ', "")
}

enum Candidate {
    Value(Type),
    Ref(Type),
    Context(Option<Ident>),
}

/// Analyses a handler's signature, reporting every problem. `in_impl` says whether it is a
/// method of a `#[handler] impl` block (which must take `&self`). Returns the signature only
/// if nothing is wrong.
pub fn analyze(
    sig: &syn::Signature,
    in_impl: bool,
    findings: &mut Vec<Finding>,
) -> Option<Signature> {
    let before = findings.len();
    let name = &sig.ident;
    if in_impl && !sig.inputs.iter().any(|i| matches!(i, FnArg::Receiver(_))) {
        // Almost always a constructor or helper placed in the wrong block: say that once,
        // rather than also reporting it as a non-async handler without a message.
        findings.push(
            Finding::new(
                &catalog::HANDLER_IMPL_HELPER,
                name.span(),
                format!("`{name}` does not take `&self`, but every method of a `#[handler] impl` block is a handler"),
            )
            .with_help(format!(
                "move `{name}` into a separate `impl` block without `#[handler]`, or add `&self`"
            )),
        );
        return None;
    }
    if sig.asyncness.is_none() {
        let help = if in_impl {
            "write `async fn`; move helper methods into a separate `impl` block without `#[handler]`"
        } else {
            "write `async fn`"
        };
        findings.push(
            Finding::new(
                &catalog::HANDLER_NOT_ASYNC,
                sig.fn_token.span,
                format!("handler `{name}` must be an `async fn`"),
            )
            .with_help(help),
        );
    }
    if let Some(param) = sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, GenericParam::Lifetime(_)))
    {
        findings.push(Finding::new(
            &catalog::HANDLER_GENERIC,
            param.span(),
            "a handler cannot be generic: it is registered for one concrete message type",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        findings.push(
            Finding::new(
                &catalog::HANDLER_MISPLACED,
                unsafety.span,
                "a handler cannot be `unsafe`",
            )
            .with_help("remove `unsafe`; call unsafe code inside the body"),
        );
    }

    let mut receiver = false;
    let mut candidates: Vec<(Candidate, Span)> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                if !in_impl {
                    findings.push(
                        Finding::new(
                            &catalog::HANDLER_MISPLACED,
                            r.span(),
                            "`self` is only allowed in a `#[handler] impl` block",
                        )
                        .with_help("put the method in `#[handler] impl MyService { … }`"),
                    );
                } else if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some()
                {
                    findings.push(Finding::new(
                        &catalog::HANDLER_MUTABLE_PARAMETER,
                        r.span(),
                        "a handler method takes `&self`: its state is shared by concurrent dispatches",
                    ).with_help("write `&self` and use interior mutability (`Mutex`, atomics) for changes"));
                } else {
                    receiver = true;
                }
            }
            FnArg::Typed(pat) => match &*pat.ty {
                Type::Reference(r) if r.mutability.is_some() => findings.push(Finding::new(
                    &catalog::HANDLER_MUTABLE_PARAMETER,
                    r.span(),
                    "a handler cannot take `&mut` parameters: state is shared by concurrent dispatches",
                ).with_help("take `&T` and use interior mutability (`Mutex`, atomics) inside `T`")),
                Type::Reference(r) if is_context(&r.elem) => {
                    if candidates
                        .iter()
                        .any(|(c, _)| matches!(c, Candidate::Context(_)))
                    {
                        findings.push(
                            Finding::new(
                                &catalog::HANDLER_TWO_MESSAGES,
                                r.span(),
                                "`&Context` is taken twice",
                            )
                            .with_help("remove one of them"),
                        );
                    }
                    let ident = match &*pat.pat {
                        syn::Pat::Ident(p) => Some(p.ident.clone()),
                        _ => None,
                    };
                    candidates.push((Candidate::Context(ident), r.span()));
                }
                Type::Reference(r) => candidates.push((Candidate::Ref((*r.elem).clone()), r.span())),
                Type::ImplTrait(t) => findings.push(
                    Finding::new(
                        &catalog::HANDLER_GENERIC,
                        t.span(),
                        "a handler parameter cannot be `impl Trait`",
                    )
                    .with_help("name the message or state type"),
                ),
                ty if is_context(ty) => findings.push(
                    Finding::new(
                        &catalog::CONTEXT_BY_VALUE,
                        ty.span(),
                        "the context is borrowed, not owned",
                    )
                    .with_help("write `ctx: &Context`"),
                ),
                ty => candidates.push((Candidate::Value(ty.clone()), ty.span())),
            },
        }
    }
    let values: Vec<&Type> = candidates
        .iter()
        .filter_map(|(c, _)| match c {
            Candidate::Value(t) => Some(t),
            _ => None,
        })
        .collect();
    let (message, taking) = match values.as_slice() {
        [one] => (Some((*one).clone()), Taking::Value),
        [first, second, ..] => {
            let (first, second) = (tokens_text(first), tokens_text(second));
            findings.push(
                Finding::new(
                    &catalog::HANDLER_TWO_MESSAGES,
                    values[1].span(),
                    format!(
                        "a handler takes exactly one message, but `{first}` and `{second}` are both taken by value"
                    ),
                )
                .with_help(format!("state parameters are borrowed: write `&{second}`")),
            );
            (None, Taking::Value)
        }
        [] => {
            let first_ref = candidates.iter().find_map(|(c, _)| match c {
                Candidate::Ref(t) => Some(t.clone()),
                _ => None,
            });
            if first_ref.is_none() {
                findings.push(Finding::new(
                    &catalog::HANDLER_WITHOUT_MESSAGE,
                    name.span(),
                    format!("handler `{name}` has no message parameter"),
                ));
            }
            (first_ref, Taking::Ref)
        }
    };

    let ret = match &sig.output {
        ReturnType::Type(_, ty) => {
            if let Type::ImplTrait(t) = &**ty {
                findings.push(
                    Finding::new(
                        &catalog::HANDLER_RETURN_NOT_RESULT,
                        t.span(),
                        "a handler returns `Result<Output, E>`, not `impl Trait`",
                    )
                    .with_help("name the `Result` type"),
                );
            }
            Some((**ty).clone())
        }
        ReturnType::Default => {
            findings.push(
                Finding::new(
                    &catalog::HANDLER_RETURN_NOT_RESULT,
                    sig.paren_token.span.close(),
                    format!("handler `{name}` must return `Result<Output, E>`"),
                )
                .with_help(
                    "add a return type, e.g. `-> Result<(), MyError>`; `E` must implement `std::error::Error + Send + Sync + 'static`",
                ),
            );
            None
        }
    };

    if findings.len() != before {
        return None;
    }
    let (message, ret) = (message?, ret?);
    let mut params = Vec::new();
    let mut context = None;
    let mut message_placed = false;
    for (candidate, _) in candidates {
        params.push(match candidate {
            Candidate::Context(ident) => {
                context = ident;
                Param::Context
            }
            Candidate::Value(_) => {
                message_placed = true;
                Param::Message
            }
            Candidate::Ref(_) if taking == Taking::Ref && !message_placed => {
                message_placed = true;
                Param::Message
            }
            Candidate::Ref(t) => Param::State(Box::new(t)),
        });
    }
    Some(Signature {
        ident: name.clone(),
        receiver,
        params,
        message,
        taking,
        ret,
        context,
    })
}

/// Analyses a `#[handler] impl` block: the block itself and each method. Returns each method
/// with its signature (for the methods that are well-formed).
pub fn analyze_impl<'a>(
    block: &'a ItemImpl,
    findings: &mut Vec<Finding>,
) -> Vec<(&'a syn::ImplItemFn, Signature)> {
    if let Some((_, path, _)) = &block.trait_ {
        findings.push(
            Finding::new(
                &catalog::HANDLER_MISPLACED,
                path.span(),
                "`#[handler]` goes on an inherent `impl` block, not a trait impl",
            )
            .with_help("write `#[handler] impl MyService { async fn …(&self, cmd: MyCommand) … }`"),
        );
        return Vec::new();
    }
    if !block.generics.params.is_empty() {
        findings.push(
            Finding::new(
                &catalog::HANDLER_GENERIC,
                block.generics.params.span(),
                "a `#[handler] impl` block cannot be generic: its handlers are registered for concrete types",
            )
            .with_help("implement the handlers on a concrete type"),
        );
        return Vec::new();
    }
    let mut methods = Vec::new();
    let mut seen: HashMap<String, Ident> = HashMap::new();
    for item in &block.items {
        let ImplItem::Fn(method) = item else {
            findings.push(Finding::new(
                &catalog::HANDLER_IMPL_HELPER,
                item.span(),
                "only handler methods may appear in a `#[handler] impl` block",
            ));
            continue;
        };
        let Some(sig) = analyze(&method.sig, true, findings) else {
            continue;
        };
        let key = tokens_text(&sig.message);
        if let Some(first) = seen.get(&key) {
            findings.push(
                Finding::new(
                    &catalog::DUPLICATE_HANDLER,
                    sig.message.span(),
                    format!("`{key}` already has a handler in this block (`{first}`)"),
                )
                .with_help("keep one handler per message type"),
            );
            continue;
        }
        seen.insert(key, sig.ident.clone());
        methods.push((method, sig));
    }
    methods
}

/// `#[handler]` on something that is neither an `async fn` nor an `impl` block.
pub fn misplaced(item: &impl Spanned) -> Finding {
    Finding::new(
        &catalog::HANDLER_MISPLACED,
        item.span(),
        "`#[handler]` goes on an `async fn` or on an `impl` block of handler methods",
    )
}

fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Context" && s.arguments.is_empty()),
        _ => false,
    }
}

/// The help for an unknown rule name: the closest rule name if one is near, and where the
/// list is (a command, since a path into catga's repository means nothing in a user's crate).
fn unknown_rule_help(name: &str) -> String {
    let names: Vec<&str> = catalog::RULES.iter().map(|r| r.name).collect();
    match super::closest(name, &names) {
        Some(near) => format!("did you mean `{near}`? `cargo catga rules` lists every rule"),
        None => {
            "name a rule, e.g. `allow(unwrap_in_handler)`; `cargo catga rules` lists every rule"
                .to_owned()
        }
    }
}
