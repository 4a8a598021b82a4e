//! `static_app!`: a handler set fixed at compile time, dispatched by direct calls.
//!
//! [`expand`] parses the block ([`parse`]), reports every mistake together (a message listed
//! twice, an event without handlers, a bad `crate` path), and generates the app type: one
//! state field per listed handler, `StaticRoute<M>` for each request (a direct call),
//! `StaticSubscribers<E>` for each event (its handlers joined), and `StaticApp` (resolving
//! the state, and running queued events by type).

mod parse;

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Type};

use crate::args::{Errors, crate_path};
use parse::{App, Route};

pub fn expand(input: TokenStream) -> TokenStream {
    let app: App = match syn::parse2(input) {
        Ok(app) => app,
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    for problem in &app.problems {
        errors.push(problem.clone());
    }
    let krate = crate_path(app.krate.as_ref(), &mut errors);
    let mut out = Generated::new(&krate, &app.name);
    let mut seen: Vec<String> = Vec::new();
    for (r, route) in app.routes.iter().enumerate() {
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
            Route::Request { message, handler } => out.request(r, message, handler),
            Route::Event { message, handlers } => out.event(r, message, handlers),
        }
    }
    let app_type = out.app_type(&app);
    let errors = errors.into_compile_errors();
    quote! {
        #app_type
        #errors
    }
}

/// What the listed routes contribute to the app type, collected route by route.
struct Generated<'a> {
    krate: &'a TokenStream,
    /// `#krate::__private`.
    p: TokenStream,
    name: &'a Ident,
    /// `field: <H as …>::State`, one per listed handler.
    fields: Vec<TokenStream>,
    /// Statements resolving each field's state (collecting every missing one).
    resolves: Vec<TokenStream>,
    field_names: Vec<Ident>,
    /// `StaticRoute` / `StaticSubscribers` impls.
    impls: Vec<TokenStream>,
    /// `publish_any`'s arm for each event: downcast, then run its handlers.
    publish_any_arms: Vec<TokenStream>,
}

impl<'a> Generated<'a> {
    fn new(krate: &'a TokenStream, name: &'a Ident) -> Self {
        Generated {
            krate,
            p: quote!(#krate::__private),
            name,
            fields: Vec::new(),
            resolves: Vec::new(),
            field_names: Vec::new(),
            impls: Vec::new(),
            publish_any_arms: Vec::new(),
        }
    }

    /// A state field for the handler `bound` (`<H as …Handler<M>>`), resolved at build; a
    /// missing state is a `Problem` reported with every other.
    fn state_field(&mut self, field: &Ident, bound: &TokenStream) {
        let krate = self.krate;
        self.fields.push(quote!(#field: #bound::State));
        self.resolves.push(quote! {
            let #field = match #bound::resolve(__catga_states) {
                ::core::result::Result::Ok(__catga_s) => ::core::option::Option::Some(__catga_s),
                ::core::result::Result::Err(__catga_missing) => {
                    __catga_problems.push(#krate::Problem::MissingState { handler: #bound::META, types: __catga_missing.0 });
                    ::core::option::Option::None
                }
            };
        });
        self.field_names.push(field.clone());
    }

    /// `Message => handler`: a direct call of the handler.
    fn request(&mut self, r: usize, message: &Type, handler: &Type) {
        let (krate, p, name) = (self.krate, self.p.clone(), self.name);
        let field = format_ident!("__catga_h{}", r);
        let bound = quote_spanned!(handler.span()=> <#handler as #p::RequestHandler<#message>>);
        self.state_field(&field, &bound);
        self.impls.push(quote! {
            #[automatically_derived]
            impl #p::StaticRoute<#message> for #name {
                #[inline]
                fn call<'__a>(
                    &'__a self,
                    __catga_msg: #message,
                    __catga_ctx: &'__a #krate::Context,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<<#message as #krate::Message>::Output, #p::Error>,
                > + ::core::marker::Send + '__a {
                    #bound::call(&self.#field, __catga_msg, __catga_ctx)
                }
            }
        });
    }

    /// `Event => [a, b, …]`: the handlers joined, each result noted in the publish's outcome.
    fn event(&mut self, r: usize, message: &Type, handlers: &[Type]) {
        let (krate, p, name) = (self.krate, self.p.clone(), self.name);
        let mut runs = Vec::new();
        let mut names = Vec::new();
        let mut results = Vec::new();
        for (h, handler) in handlers.iter().enumerate() {
            let field = format_ident!("__catga_e{}_{}", r, h);
            // The handler's scope tag in the publish (0 means "no handler").
            let scope = u32::try_from(h + 1).unwrap_or(u32::MAX);
            let bound = quote_spanned!(handler.span()=> <#handler as #p::EventHandler<#message>>);
            self.state_field(&field, &bound);
            runs.push(quote!(#p::run_static_event::<#message, #handler, __L>(__catga_layers, &self.#field, __catga_event, __catga_ctx, #scope)));
            names.push(quote!(#bound::META.name));
            results.push(format_ident!("__catga_r{}", h));
        }
        self.impls.push(quote! {
            #[automatically_derived]
            impl #p::StaticSubscribers<#message> for #name {
                fn run<'__a, __L: #p::Layer>(
                    &'__a self,
                    __catga_layers: &'__a __L,
                    __catga_event: &'__a #message,
                    __catga_ctx: &'__a #krate::Context,
                ) -> impl ::core::future::Future<Output = #p::Outcome> + ::core::marker::Send + '__a {
                    async move {
                        let ( #(#results,)* ) = #p::join!( #(#runs),* );
                        let mut __catga_outcome = #p::Outcome::new();
                        #( __catga_outcome.note(#names, #results); )*
                        __catga_outcome
                    }
                }
            }
        });
        self.publish_any_arms.push(quote! {
            if let ::core::option::Option::Some(__catga_event) = __catga_event.as_any().downcast_ref::<#message>() {
                return ::std::boxed::Box::pin(<Self as #p::StaticSubscribers<#message>>::run(self, __catga_layers, __catga_event, __catga_ctx));
            }
        });
    }

    /// The app type: its fields, `builder()`, `StaticApp`, the `NoRoute` stand-in, and every
    /// route's impls.
    fn app_type(self, app: &App) -> TokenStream {
        let Generated {
            krate,
            p,
            name,
            fields,
            resolves,
            field_names,
            impls,
            publish_any_arms,
        } = self;
        let (attrs, vis) = (&app.attrs, &app.vis);
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
                fn resolve(__catga_states: &#p::States) -> ::core::result::Result<Self, ::std::vec::Vec<#krate::Problem>> {
                    #[allow(unused_mut)]
                    let mut __catga_problems = ::std::vec::Vec::new();
                    #(#resolves)*
                    match ( #(#field_names,)* ) {
                        ( #( ::core::option::Option::Some(#field_names), )* ) => ::core::result::Result::Ok(#name { #(#field_names,)* }),
                        #[allow(unreachable_patterns)]
                        _ => ::core::result::Result::Err(__catga_problems),
                    }
                }

                #[allow(unused_variables)]
                fn publish_any<'__a, __L: #p::Layer>(
                    &'__a self,
                    __catga_layers: &'__a __L,
                    __catga_event: &'__a dyn #p::AnyMessage,
                    __catga_ctx: &'__a #krate::Context,
                ) -> #p::BoxFuture<'__a, #p::Outcome> {
                    #(#publish_any_arms)*
                    ::std::boxed::Box::pin(async { #p::Outcome::new() })
                }
            }

            #[automatically_derived]
            impl #p::StaticRoute<#p::NoRoute> for #name {
                #[allow(clippy::manual_async_fn)]
                fn call<'__a>(
                    &'__a self,
                    __catga_msg: #p::NoRoute,
                    __catga_ctx: &'__a #krate::Context,
                ) -> impl ::core::future::Future<Output = ::core::result::Result<(), #p::Error>> + ::core::marker::Send + '__a {
                    async move { match __catga_msg {} }
                }
            }

            #(#impls)*
        }
    }
}
