//! Code generation for one handler, one function per generated piece.
//!
//! A handler becomes, inside a `const _` block: a compile-time check of how it takes its
//! message ([`Generate::check`]), the handler trait impl (`OwnedHandler<M>` for a by-value
//! message, `EventHandler<E>` for a borrowed event) whose state is resolved once at build
//! ([`Generate::state`]) and whose call converts the user's result and error
//! ([`Generate::call_body`]), and an `inventory` descriptor so `build()` finds it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

use catga_lints::rules::handler::{Param, Signature, Taking};

pub struct Target<'a> {
    /// The type the handler traits are implemented for.
    pub marker: &'a TokenStream,
    /// The path to call: the function, or `<Type>::method`.
    pub callee: TokenStream,
    /// The handler's name relative to its module.
    pub name: String,
    /// The `impl` block's type, whose value is the `&self` state.
    pub self_ty: Option<&'a Type>,
    pub sig: &'a Signature,
}

/// The tokens for one handler.
pub fn handler(krate: &TokenStream, t: &Target<'_>) -> TokenStream {
    Generate {
        krate,
        p: quote!(#krate::__private),
        t,
    }
    .handler()
}

struct Generate<'a> {
    krate: &'a TokenStream,
    /// `#krate::__private`.
    p: TokenStream,
    t: &'a Target<'a>,
}

impl Generate<'_> {
    fn handler(&self) -> TokenStream {
        let (krate, p) = (self.krate, &self.p);
        let msg = &self.t.sig.message;
        let marker = self.t.marker;
        let check = self.check();
        let name = &self.t.name;
        let (state_ty, resolve) = self.state();
        let meta = self.meta();
        let call_body = self.call_body();
        // By value: `OwnedHandler<M>`, replying the message's output. Borrowed (an event):
        // `EventHandler<E>`, replying `()`.
        let (handler_trait, msg_param, output, bind) = match self.t.sig.taking {
            Taking::Value => (
                quote!(OwnedHandler),
                quote!(#msg),
                quote!(<#msg as #krate::Message>::Output),
                quote!(__bind_owned),
            ),
            Taking::Ref => (
                quote!(EventHandler),
                quote!(&'__a #msg),
                quote!(()),
                quote!(__bind_borrowed),
            ),
        };
        quote! {
            const _: () = {
                const __NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name);
                const _: () = #check;

                #[automatically_derived]
                impl #p::#handler_trait<#msg> for #marker {
                    type State = #state_ty;
                    const META: #p::HandlerMeta = #meta;

                    fn resolve(__states: &#p::States) -> ::core::result::Result<Self::State, #p::MissingState> {
                        #resolve
                    }

                    #[allow(clippy::manual_async_fn, clippy::needless_lifetimes)]
                    fn call<'__a>(
                        __state: &'__a Self::State,
                        __msg: #msg_param,
                        __ctx: &'__a #krate::Context,
                    ) -> impl ::core::future::Future<
                        Output = ::core::result::Result<#output, #p::Error>,
                    > + ::core::marker::Send + '__a {
                        async move { #call_body }
                    }
                }

                #p::inventory::submit! {
                    #p::HandlerDescriptor {
                        message: <#msg as #krate::Message>::info,
                        meta: <#marker as #p::#handler_trait<#msg>>::META,
                        bind: <#msg as #p::Bind>::#bind::<#marker>,
                    }
                }
            };
        }
    }

    /// The check that the message is taken the way its kind requires (a request by value, an
    /// event by reference), reported at the message's span.
    fn check(&self) -> TokenStream {
        let p = &self.p;
        let msg = &self.t.sig.message;
        match self.t.sig.taking {
            Taking::Value => quote_spanned!(msg.span()=> #p::assert_by_value::<#msg>()),
            Taking::Ref => quote_spanned!(msg.span()=> #p::assert_by_ref::<#msg>()),
        }
    }

    /// The types of the handler's state (`&self` first, then each `&T` in declared order),
    /// and the body of `resolve`, which looks each up once at build and reports every missing
    /// one together.
    fn state(&self) -> (TokenStream, TokenStream) {
        let (sig, p) = (self.t.sig, &self.p);
        let mut types: Vec<&Type> = Vec::new();
        if let (true, Some(self_ty)) = (sig.receiver, self.t.self_ty) {
            types.push(self_ty);
        }
        for param in &sig.params {
            if let Param::State(ty) = param {
                types.push(ty);
            }
        }
        let vars: Vec<_> = (0..types.len())
            .map(|i| format_ident!("__s{}", i))
            .collect();
        let state_ty = quote!( ( #( ::std::sync::Arc<#types>, )* ) );
        let resolve = quote! {
            #[allow(unused_mut)]
            let mut __missing = ::std::vec::Vec::new();
            #( let #vars = __states.resolve::<#types>(&mut __missing); )*
            match ( #( #vars, )* ) {
                ( #( ::core::option::Option::Some(#vars), )* ) => ::core::result::Result::Ok(( #( #vars, )* )),
                #[allow(unreachable_patterns)]
                _ => ::core::result::Result::Err(#p::MissingState(__missing)),
            }
        };
        (state_ty, resolve)
    }

    /// The handler's `HandlerMeta`: its path and where it is declared.
    fn meta(&self) -> TokenStream {
        let p = &self.p;
        let line = quote_spanned!(self.t.sig.ident.span()=> ::core::line!());
        quote! {
            #p::HandlerMeta {
                name: __NAME,
                location: #p::Location { file: ::core::file!(), line: #line },
            }
        }
    }

    /// The arguments of the user's function, in the user's order.
    fn call_args(&self) -> Vec<TokenStream> {
        let sig = self.t.sig;
        let mut args = Vec::new();
        let mut state_index = usize::from(sig.receiver);
        if sig.receiver {
            args.push(quote!(&*__state.0));
        }
        for param in &sig.params {
            args.push(match param {
                Param::Message => quote!(__msg),
                Param::Context => quote!(__ctx),
                Param::State(_) => {
                    let i = syn::Index::from(state_index);
                    state_index += 1;
                    quote!(&*__state.#i)
                }
            });
        }
        args
    }

    /// Calls the user's function and converts what it returns: the value is the reply, the
    /// error becomes a catga `Error` keeping its retryability, code and source chain.
    fn call_body(&self) -> TokenStream {
        let (krate, p, sig) = (self.krate, &self.p, self.t.sig);
        let msg = &sig.message;
        let callee = &self.t.callee;
        let args = self.call_args();
        let ret = &sig.ret;
        let into_result = quote_spanned!(ret.span()=>
            <_ as #p::HandlerReturn<#msg>>::into_result(__result)
        );
        // A borrowing handler replies `()`: its message's output is `()` when it is an event;
        // for a command (a mistake `assert_by_ref` reports) the value is dropped, so the
        // mistake is not reported a second time as a type mismatch.
        let ok = match sig.taking {
            Taking::Value => quote!(__ok),
            Taking::Ref => quote!({
                let _ = __ok;
            }),
        };
        quote! {
            let __result = #callee( #(#args),* ).await;
            match #into_result {
                ::core::result::Result::Ok(__ok) => ::core::result::Result::Ok(#ok),
                ::core::result::Result::Err(__err) => {
                    #[allow(unused_imports)]
                    use #p::{NoErrorCode as _, NoRetryable as _, ViaErrorCode as _, ViaRetryable as _};
                    let __retryable = (&&#p::Probe(&__err)).catga_retryable();
                    let __coded = (&&#p::Probe(&__err)).catga_error_code();
                    #[allow(unused_imports)]
                    use #p::{ViaInto as _, ViaNothing as _, ViaStdError as _, ViaWrapper as _};
                    let __boxed = (&&&#p::ErrorSlot::new(__err)).catga_box_error();
                    let __retryable = __retryable || #p::inner_retryable(&__boxed);
                    ::core::result::Result::Err(#p::Error::__from_handler_boxed(
                        <#msg as #krate::Message>::NAME, __NAME, __boxed, __retryable, __coded,
                    ))
                }
            }
        }
    }
}
