//! The grammar of `static_app!`: attributes, `struct Name { Message => handler, Event => [a, b], … }`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, Token, Type, Visibility, braced, bracketed};

pub struct App {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub krate: Option<LitStr>,
    pub routes: Vec<Route>,
    /// Mistakes found while parsing that do not stop it, reported with the rest.
    pub problems: Vec<syn::Error>,
}

pub enum Route {
    Request { message: Type, handler: Type },
    Event { message: Type, handlers: Vec<Type> },
}

impl Parse for App {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut attrs = input.call(Attribute::parse_outer)?;
        // `#[catga(crate = "…")]` selects a renamed runtime crate.
        let mut krate = None;
        let mut kept = Vec::new();
        for attr in attrs.drain(..) {
            if attr.path().is_ident("catga") {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("crate") {
                        krate = Some(meta.value()?.parse()?);
                        Ok(())
                    } else {
                        Err(meta.error("unknown `catga` argument\n  help: the only argument is `crate = \"…\"`"))
                    }
                })?;
            } else {
                kept.push(attr);
            }
        }
        let vis = input.parse()?;
        input.parse::<Token![struct]>()?;
        let name = input.parse()?;
        let body;
        braced!(body in input);
        let mut routes = Vec::new();
        let mut problems = Vec::new();
        while !body.is_empty() {
            let message: Type = body.parse()?;
            body.parse::<Token![=>]>()?;
            if body.peek(syn::token::Bracket) {
                let list;
                bracketed!(list in body);
                let handlers: Punctuated<Type, Token![,]> = Punctuated::parse_terminated(&list)?;
                if handlers.is_empty() {
                    problems.push(syn::Error::new(
                        message.span(),
                        "an event listed in `static_app!` needs at least one handler\n  help: remove the line, or list handlers: `MyEvent => [a, b]`",
                    ));
                } else {
                    routes.push(Route::Event {
                        message,
                        handlers: handlers.into_iter().collect(),
                    });
                }
            } else {
                routes.push(Route::Request {
                    message,
                    handler: body.parse()?,
                });
            }
            if body.is_empty() {
                break;
            }
            body.parse::<Token![,]>()?;
        }
        Ok(App {
            attrs: kept,
            vis,
            name,
            krate,
            routes,
            problems,
        })
    }
}
