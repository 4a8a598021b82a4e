//! Code generation for one handler.

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

pub fn handler(krate: &TokenStream, t: &Target<'_>) -> TokenStream {
    let sig = t.sig;
    let marker = t.marker;
    let msg = &sig.message;
    let p = quote!(#krate::__private);

    // State: `&self` first, then each `&T` in declared order.
    let mut state_types: Vec<&Type> = Vec::new();
    if let (true, Some(self_ty)) = (sig.receiver, t.self_ty) {
        state_types.push(self_ty);
    }
    for param in &sig.params {
        if let Param::State(ty) = param {
            state_types.push(ty);
        }
    }
    let state_vars: Vec<_> = (0..state_types.len())
        .map(|i| format_ident!("__s{}", i))
        .collect();
    let state_ty = quote!( ( #( ::std::sync::Arc<#state_types>, )* ) );
    let resolve = quote! {
        #[allow(unused_mut)]
        let mut __missing = ::std::vec::Vec::new();
        #( let #state_vars = __states.resolve::<#state_types>(&mut __missing); )*
        match ( #( #state_vars, )* ) {
            ( #( ::core::option::Option::Some(#state_vars), )* ) => ::core::result::Result::Ok(( #( #state_vars, )* )),
            #[allow(unreachable_patterns)]
            _ => ::core::result::Result::Err(#p::MissingState(__missing)),
        }
    };

    // The call, arguments in the user's order.
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
    let callee = &t.callee;
    let ret = &sig.ret;
    let into_result = quote_spanned!(ret.span()=>
        <_ as #p::HandlerReturn<#msg>>::into_result(__result)
    );
    // A borrowing handler replies `()`: its message's output is `()` when it is an event; for
    // a command (a mistake `assert_by_ref` reports) the value is dropped, so the mistake is
    // not reported a second time as a type mismatch.
    let ok = match sig.taking {
        Taking::Value => quote!(__ok),
        Taking::Ref => quote!({
            let _ = __ok;
        }),
    };
    let call_body = quote! {
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
    };

    let name = &t.name;
    let line = quote_spanned!(sig.ident.span()=> ::core::line!());
    let meta = quote! {
        #p::HandlerMeta {
            name: __NAME,
            location: #p::Location { file: ::core::file!(), line: #line },
        }
    };
    let name_const = quote! {
        const __NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name);
    };

    match sig.taking {
        Taking::Value => {
            let check = quote_spanned!(msg.span()=> #p::assert_by_value::<#msg>());
            quote! {
                const _: () = {
                    #name_const
                    const _: () = #check;

                    #[automatically_derived]
                    impl #p::OwnedHandler<#msg> for #marker {
                        type State = #state_ty;
                        const META: #p::HandlerMeta = #meta;

                        fn resolve(__states: &#p::States) -> ::core::result::Result<Self::State, #p::MissingState> {
                            #resolve
                        }

                        #[allow(clippy::manual_async_fn, clippy::needless_lifetimes)]
                        fn call<'__a>(
                            __state: &'__a Self::State,
                            __msg: #msg,
                            __ctx: &'__a #krate::Context,
                        ) -> impl ::core::future::Future<
                            Output = ::core::result::Result<<#msg as #krate::Message>::Output, #p::Error>,
                        > + ::core::marker::Send + '__a {
                            async move { #call_body }
                        }
                    }

                    #p::inventory::submit! {
                        #p::HandlerDescriptor {
                            message: <#msg as #krate::Message>::info,
                            meta: <#marker as #p::OwnedHandler<#msg>>::META,
                            bind: <#msg as #p::Bind>::__bind_owned::<#marker>,
                        }
                    }
                };
            }
        }
        Taking::Ref => {
            let check = quote_spanned!(msg.span()=> #p::assert_by_ref::<#msg>());
            quote! {
                const _: () = {
                    #name_const
                    const _: () = #check;

                    #[automatically_derived]
                    impl #p::EventHandler<#msg> for #marker {
                        type State = #state_ty;
                        const META: #p::HandlerMeta = #meta;

                        fn resolve(__states: &#p::States) -> ::core::result::Result<Self::State, #p::MissingState> {
                            #resolve
                        }

                        #[allow(clippy::manual_async_fn, clippy::needless_lifetimes)]
                        fn call<'__a>(
                            __state: &'__a Self::State,
                            __msg: &'__a #msg,
                            __ctx: &'__a #krate::Context,
                        ) -> impl ::core::future::Future<
                            Output = ::core::result::Result<(), #p::Error>,
                        > + ::core::marker::Send + '__a {
                            async move { #call_body }
                        }
                    }

                    #p::inventory::submit! {
                        #p::HandlerDescriptor {
                            message: <#msg as #krate::Message>::info,
                            meta: <#marker as #p::EventHandler<#msg>>::META,
                            bind: <#msg as #p::Bind>::__bind_borrowed::<#marker>,
                        }
                    }
                };
            }
        }
    }
}
