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
        p: quote!(__catga),
        t,
    }
    .handler()
}

struct Generate<'a> {
    krate: &'a TokenStream,
    /// `__catga`: the block's alias of `#krate::__private` (one path segment instead of two keeps
    /// the expansion, which rustc parses and resolves on every build, short).
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
                quote!(<#msg as #p::Message>::Output),
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
                use #krate::__private as __catga;
                #[allow(unused_imports)]
                use __catga::probes::in_scope::*;
                const __NAME: &'static str = ::core::concat!(::core::module_path!(), "::", #name);
                const _: () = #check;

                #[automatically_derived]
                impl #p::#handler_trait<#msg> for #marker {
                    type State = #state_ty;
                    const META: #p::HandlerMeta = #meta;

                    fn resolve(__catga_states: &#p::States) -> #p::Result<Self::State, #p::MissingState> {
                        #resolve
                    }

                    #[allow(clippy::needless_lifetimes)]
                    fn call<'__a>(
                        __catga_state: &'__a Self::State,
                        __catga_msg: #msg_param,
                        __catga_ctx: &'__a #p::Context,
                    ) -> impl #p::Future<Output = #p::Result<#output, #p::Error>> + #p::Send + '__a {
                        #call_body
                    }
                }

                #p::inventory::submit! {
                    #p::HandlerDescriptor {
                        message: <#msg as #p::Message>::info,
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
            .map(|i| format_ident!("__catga_s{}", i))
            .collect();
        let state_ty = quote!( ( #( #p::Arc<#types>, )* ) );
        if types.is_empty() {
            return (quote!(()), quote!(#p::Ok(())));
        }
        let resolve = quote! {
            let mut __catga_missing = #p::Vec::new();
            #( let #vars = __catga_states.resolve::<#types>(&mut __catga_missing); )*
            match ( #( #vars, )* ) {
                ( #( #p::Some(#vars), )* ) => #p::Ok(( #( #vars, )* )),
                #[allow(unreachable_patterns)]
                _ => #p::Err(#p::MissingState(__catga_missing)),
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
            args.push(quote!(&*__catga_state.0));
        }
        for param in &sig.params {
            args.push(match param {
                Param::Message => quote!(__catga_msg),
                Param::Context => quote!(__catga_ctx),
                Param::State(_) => {
                    let i = syn::Index::from(state_index);
                    state_index += 1;
                    quote!(&*__catga_state.#i)
                }
            });
        }
        args
    }

    /// Calls the user's function and converts what it returns: the value is the reply, the
    /// error becomes a catga `Error` keeping its retryability, code and source chain.
    fn call_body(&self) -> TokenStream {
        let (p, sig) = (&self.p, self.t.sig);
        let msg = &sig.message;
        let callee = &self.t.callee;
        let args = self.call_args();
        let ret = &sig.ret;
        let into_result = quote_spanned!(ret.span()=>
            <_ as #p::HandlerReturn<#msg>>::into_result(__catga_result)
        );
        // A borrowing handler replies `()`: its message's output is `()` when it is an event;
        // for a command (a mistake `assert_by_ref` reports) the value is dropped, so the
        // mistake is not reported a second time as a type mismatch.
        let ok = match sig.taking {
            Taking::Value => quote!(__catga_ok),
            Taking::Ref => quote!({
                let _ = __catga_ok;
            }),
        };
        quote! {
            #p::Converted::new(#callee( #(#args),* ), |__catga_result| match #into_result {
                #p::Ok(__catga_ok) => #p::Ok(#ok),
                #p::Err(__catga_err) => {
                    let __catga_retryable = (&&#p::Probe(&__catga_err)).catga_retryable();
                    let __catga_coded = (&&#p::Probe(&__catga_err)).catga_error_code();
                    let __catga_boxed = (&&&#p::ErrorSlot::new(__catga_err)).catga_box_error();
                    #p::Err(#p::handler_error(<#msg as #p::Message>::NAME, __NAME, __catga_boxed, __catga_retryable, __catga_coded))
                }
            })
        }
    }
}
