//! Reads a handler's signature: which parameter is the message, which is the context, which
//! are state. Roles come from the parameter's form, never from names: the message is the one
//! parameter taken by value (or, if none is, the first borrowed one, which makes the handler an
//! event handler); `&Context` is the context; every other `&T` is state.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, GenericParam, Ident, ReturnType, Type};

use crate::args::Errors;

/// One parameter of the user's function, in declared order.
pub enum Param {
    Message,
    Context,
    State(Box<Type>),
}

/// How the handler takes its message.
pub enum Taking {
    Value,
    Ref,
}

pub struct Signature {
    pub ident: Ident,
    pub receiver: bool,
    pub params: Vec<Param>,
    pub message: Type,
    pub taking: Taking,
    pub ret: Type,
}

enum Candidate {
    Value(Type),
    Ref(Type),
    Context,
}

/// Analyses `sig`, reporting every problem. `in_impl` says whether it is a method of a
/// `#[handler] impl` block (which must take `&self`).
pub fn analyze(sig: &syn::Signature, in_impl: bool, errors: &mut Errors) -> Option<Signature> {
    let before = errors.count();
    let name = &sig.ident;
    if in_impl && !sig.inputs.iter().any(|i| matches!(i, FnArg::Receiver(_))) {
        // Almost always a constructor or helper placed in the wrong block: say that once,
        // rather than also reporting it as a non-async handler without a message.
        errors.at(
            name.span(),
            format!(
                "`{name}` does not take `&self`, but every method of a `#[handler] impl` block is a handler\n  \
                 help: move `{name}` into a separate `impl` block without `#[handler]`, or add `&self`"
            ),
        );
        return None;
    }
    if sig.asyncness.is_none() {
        let help = if in_impl {
            "help: write `async fn`; move helper methods into a separate `impl` block without `#[handler]`"
        } else {
            "help: write `async fn`"
        };
        errors.at(
            sig.fn_token.span,
            format!("handler `{name}` must be an `async fn`\n  {help}"),
        );
    }
    if let Some(param) = sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, GenericParam::Lifetime(_)))
    {
        errors.spanned(
            param,
            "a handler cannot be generic: it is registered for one concrete message type\n  \
             help: write one handler per message type",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(unsafety, "a handler cannot be `unsafe`\n  help: remove `unsafe`; call unsafe code inside the body");
    }

    let mut receiver = false;
    let mut candidates: Vec<(Candidate, Span)> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => {
                if !in_impl {
                    errors.spanned(r, "`self` is only allowed in a `#[handler] impl` block");
                } else if r.reference.is_none() || r.mutability.is_some() || r.colon_token.is_some() {
                    errors.spanned(
                        r,
                        "a handler method takes `&self`\n  \
                         help: the handler's state is shared by concurrent dispatches; write `&self` and use interior mutability (`Mutex`, atomics) for changes",
                    );
                } else {
                    receiver = true;
                }
            }
            FnArg::Typed(pat) => match &*pat.ty {
                Type::Reference(r) if r.mutability.is_some() => errors.spanned(
                    r,
                    "a handler cannot take `&mut` parameters: state is shared by concurrent dispatches\n  \
                     help: take `&T` and use interior mutability (`Mutex`, atomics) inside `T`",
                ),
                Type::Reference(r) if is_context(&r.elem) => {
                    if candidates.iter().any(|(c, _)| matches!(c, Candidate::Context)) {
                        errors.spanned(r, "`&Context` is taken twice\n  help: remove one of them");
                    }
                    candidates.push((Candidate::Context, r.span()));
                }
                Type::Reference(r) => candidates.push((Candidate::Ref((*r.elem).clone()), r.span())),
                Type::ImplTrait(t) => errors.spanned(
                    t,
                    "a handler parameter cannot be `impl Trait`\n  help: name the message or state type",
                ),
                ty if is_context(ty) => errors.spanned(
                    ty,
                    "the context is borrowed\n  help: write `ctx: &Context`",
                ),
                ty => candidates.push((Candidate::Value(ty.clone()), ty.span())),
            },
        }
    }
    let values: Vec<&Type> = candidates
        .iter()
        .filter_map(|(c, _)| {
            if let Candidate::Value(t) = c {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    let (message, taking) = match values.as_slice() {
        [one] => (Some((*one).clone()), Taking::Value),
        [first, second, ..] => {
            errors.spanned(
                second,
                format!(
                    "a handler takes exactly one message, but `{}` and `{}` are both taken by value\n  \
                     help: state parameters are borrowed: write `&{}`",
                    first.to_token_stream().to_string().replace(' ', ""),
                    second.to_token_stream().to_string().replace(' ', ""),
                    second.to_token_stream().to_string().replace(' ', ""),
                ),
            );
            (None, Taking::Value)
        }
        [] => {
            let first_ref = candidates.iter().find_map(|(c, _)| match c {
                Candidate::Ref(t) => Some(t.clone()),
                _ => None,
            });
            if first_ref.is_none() {
                errors.at(
                    name.span(),
                    format!(
                        "handler `{name}` has no message parameter\n  \
                         help: add the message it handles, e.g. `cmd: PlaceOrder` (or `event: &OrderPlaced`)"
                    ),
                );
            }
            (first_ref, Taking::Ref)
        }
    };

    let ret = match &sig.output {
        ReturnType::Type(_, ty) => {
            if let Type::ImplTrait(t) = &**ty {
                errors.spanned(t, "a handler returns `Result<Output, E>`, not `impl Trait`\n  help: name the `Result` type");
            }
            Some((**ty).clone())
        }
        ReturnType::Default => {
            errors.at(
                sig.paren_token.span.close(),
                format!(
                    "handler `{name}` must return `Result<Output, E>`\n  \
                     help: add a return type, e.g. `-> Result<(), MyError>`; `E` must implement `std::error::Error + Send + Sync + 'static`"
                ),
            );
            None
        }
    };

    if errors.count() != before {
        return None;
    }
    let (message, ret) = (message?, ret?);
    let mut params = Vec::new();
    let mut message_placed = false;
    for (candidate, _) in candidates {
        params.push(match candidate {
            Candidate::Context => Param::Context,
            Candidate::Value(_) => {
                message_placed = true;
                Param::Message
            }
            Candidate::Ref(t) if matches!(taking, Taking::Ref) && !message_placed => {
                message_placed = true;
                let _ = t;
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
    })
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
