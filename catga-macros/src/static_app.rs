//! `static_app!`: a handler set fixed at compile time, dispatched by direct calls.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitStr, Token, Type, Visibility, braced, bracketed};

struct App {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    krate: Option<LitStr>,
    routes: Vec<Route>,
    /// Mistakes found while parsing that do not stop it, reported with the rest.
    problems: Vec<syn::Error>,
}

enum Route {
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

pub fn expand(input: TokenStream) -> TokenStream {
    let app: App = match syn::parse2(input) {
        Ok(app) => app,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = crate::args::Errors::default();
    for problem in &app.problems {
        errors.push(problem.clone());
    }
    let krate = crate::args::crate_path(app.krate.as_ref(), &mut errors);
    let p = quote!(#krate::__private);
    let App {
        attrs,
        vis,
        name,
        routes,
        ..
    } = &app;

    let mut fields = Vec::new();
    let mut resolves = Vec::new();
    let mut field_names = Vec::new();
    let mut impls = Vec::new();
    let mut publish_any_arms = Vec::new();
    let mut seen: Vec<String> = Vec::new();

    for (r, route) in routes.iter().enumerate() {
        let message = match route {
            Route::Request { message, .. } | Route::Event { message, .. } => message,
        };
        let key = quote!(#message).to_string();
        if seen.contains(&key) {
            errors.spanned(message, "this message is listed twice\n  help: list each message once; events take a list: `MyEvent => [a, b]`");
            continue;
        }
        seen.push(key);
        match route {
            Route::Request { message, handler } => {
                let field = format_ident!("__catga_h{}", r);
                let bound =
                    quote_spanned!(handler.span()=> <#handler as #p::RequestHandler<#message>>);
                fields.push(quote!(#field: #bound::State));
                resolves.push(quote! {
                    let #field = match #bound::resolve(__states) {
                        ::core::result::Result::Ok(s) => ::core::option::Option::Some(s),
                        ::core::result::Result::Err(missing) => {
                            __problems.push(#krate::Problem::MissingState { handler: #bound::META, types: missing.0 });
                            ::core::option::Option::None
                        }
                    };
                });
                field_names.push(field.clone());
                impls.push(quote! {
                    #[automatically_derived]
                    impl #p::StaticRoute<#message> for #name {
                        #[inline]
                        fn call<'__a>(
                            &'__a self,
                            msg: #message,
                            ctx: &'__a #krate::Context,
                        ) -> impl ::core::future::Future<
                            Output = ::core::result::Result<<#message as #krate::Message>::Output, #p::Error>,
                        > + ::core::marker::Send + '__a {
                            #bound::call(&self.#field, msg, ctx)
                        }
                    }
                });
            }
            Route::Event { message, handlers } => {
                let mut runs = Vec::new();
                let mut results = Vec::new();
                for (h, handler) in handlers.iter().enumerate() {
                    let field = format_ident!("__catga_e{}_{}", r, h);
                    let result = format_ident!("__r{}", h);
                    let scope = u32::try_from(h + 1).unwrap_or(u32::MAX);
                    let bound =
                        quote_spanned!(handler.span()=> <#handler as #p::EventHandler<#message>>);
                    fields.push(quote!(#field: #bound::State));
                    resolves.push(quote! {
                        let #field = match #bound::resolve(__states) {
                            ::core::result::Result::Ok(s) => ::core::option::Option::Some(s),
                            ::core::result::Result::Err(missing) => {
                                __problems.push(#krate::Problem::MissingState { handler: #bound::META, types: missing.0 });
                                ::core::option::Option::None
                            }
                        };
                    });
                    field_names.push(field.clone());
                    runs.push(quote!(#p::run_static_event::<#message, #handler, __L>(layers, &self.#field, event, ctx, #scope)));
                    results.push(result);
                }
                impls.push(quote! {
                    #[automatically_derived]
                    impl #p::StaticSubscribers<#message> for #name {
                        fn run<'__a, __L: #p::Layer>(
                            &'__a self,
                            layers: &'__a __L,
                            event: &'__a #message,
                            ctx: &'__a #krate::Context,
                        ) -> impl ::core::future::Future<Output = ::std::vec::Vec<#p::HandlerFailure>> + ::core::marker::Send + '__a {
                            async move {
                                let ( #(#results,)* ) = #p::join!( #(#runs),* );
                                let mut failures = ::std::vec::Vec::new();
                                #( if let ::core::result::Result::Err(f) = #results { failures.push(f); } )*
                                failures
                            }
                        }
                    }
                });
                publish_any_arms.push(quote! {
                    if let ::core::option::Option::Some(event) = event.as_any().downcast_ref::<#message>() {
                        return ::std::boxed::Box::pin(<Self as #p::StaticSubscribers<#message>>::run(self, layers, event, ctx));
                    }
                });
            }
        }
    }
    let errors = errors.into_compile_errors();

    quote! {
        #(#attrs)*
        #vis struct #name {
            #(#fields,)*
        }

        impl #name {
            /// Starts building this application: register state and behaviours, then `build()`.
            #vis fn builder() -> #p::StaticBuilder<#name> {
                #p::StaticBuilder::__new()
            }
        }

        #[automatically_derived]
        impl #p::StaticApp for #name {
            fn resolve(__states: &#p::States) -> ::core::result::Result<Self, ::std::vec::Vec<#krate::Problem>> {
                #[allow(unused_mut)]
                let mut __problems = ::std::vec::Vec::new();
                #(#resolves)*
                match ( #(#field_names,)* ) {
                    ( #( ::core::option::Option::Some(#field_names), )* ) => ::core::result::Result::Ok(#name { #(#field_names,)* }),
                    #[allow(unreachable_patterns)]
                    _ => ::core::result::Result::Err(__problems),
                }
            }

            #[allow(unused_variables)]
            fn publish_any<'__a, __L: #p::Layer>(
                &'__a self,
                layers: &'__a __L,
                event: &'__a dyn #p::AnyMessage,
                ctx: &'__a #krate::Context,
            ) -> #p::BoxFuture<'__a, ::std::vec::Vec<#p::HandlerFailure>> {
                #(#publish_any_arms)*
                ::std::boxed::Box::pin(async { ::std::vec::Vec::new() })
            }
        }

        #[automatically_derived]
        impl #p::StaticRoute<#p::NoRoute> for #name {
            #[allow(clippy::manual_async_fn)]
            fn call<'__a>(
                &'__a self,
                msg: #p::NoRoute,
                _ctx: &'__a #krate::Context,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<(), #p::Error>> + ::core::marker::Send + '__a {
                async move { match msg {} }
            }
        }

        #(#impls)*
        #errors
    }
}
