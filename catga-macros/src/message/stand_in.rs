//! Stand-in impls for a type whose shape the macro rejected, so its uses add no cascade.

use catga_lints::Kind;
use catga_lints::rules::message::MessageArgs;
use proc_macro2::TokenStream;
use quote::quote;
use syn::Item;

/// Impls of the message traits for a type whose shape the macro rejected (generic, or
/// borrowing), carrying its generics and satisfied wherever the type could be a message at
/// all. The crate already fails to compile with the shape error, so the bodies never run;
/// they exist only so that every use of the type does not add a "not a message" error.
pub fn stand_in(kind: Kind, krate: &TokenStream, item: &Item, args: &MessageArgs) -> TokenStream {
    let (ident, generics) = match item {
        Item::Struct(s) => (&s.ident, &s.generics),
        Item::Enum(e) => (&e.ident, &e.generics),
        _ => return TokenStream::new(),
    };
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let predicates = where_clause.into_iter().flat_map(|w| w.predicates.iter());
    let bounds = quote! {
        where #(#predicates,)* Self: ::core::marker::Send + ::core::marker::Sync + 'static
    };
    let p = quote!(#krate::__private);
    let never = quote!(::core::unreachable!(
        "a message the macro rejected is never dispatched"
    ));
    let output = match (&args.output, kind) {
        (Some(ty), Kind::Command | Kind::Query) => quote!(#ty),
        _ => quote!(()),
    };
    let (variant, role, marker) = match kind {
        Kind::Command => (quote!(Command), quote!(RequestRole), quote!(Command)),
        Kind::Query => (quote!(Query), quote!(RequestRole), quote!(Query)),
        Kind::Event => (quote!(Event), quote!(EventRole), quote!(Event)),
    };
    let request = if kind == Kind::Event {
        TokenStream::new()
    } else {
        quote! {
            impl #impl_generics #krate::Request for #ident #ty_generics #bounds {
                fn __encode_output_json(_: &Self::Output)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #p::CodecError> { #never }
                fn __decode_output_json(_: &[u8])
                    -> ::core::result::Result<Self::Output, #p::CodecError> { #never }
            }
        }
    };
    let side_effects = if kind == Kind::Query {
        TokenStream::new()
    } else {
        quote!(impl #impl_generics #p::SideEffectsAllowed for #ident #ty_generics #bounds {})
    };
    quote! {
        #[allow(unreachable_code, unused_variables)]
        const _: () = {
            impl #impl_generics #krate::Message for #ident #ty_generics #bounds {
                type Output = #output;
                const NAME: &'static str = "";
                const KIND: #p::MessageKind = #p::MessageKind::#variant;
                fn info() -> &'static #p::MessageInfo { #never }
                fn __try_clone(&self) -> ::core::option::Option<Self> { #never }
                fn __idempotency_key(&self) -> ::core::option::Option<::std::string::String> { #never }
                fn __cache_key(&self) -> ::core::option::Option<::std::string::String> { #never }
                fn __validate(&self) -> ::core::result::Result<(), #p::ValidationErrors> { #never }
                fn __decode_json(_: &[u8])
                    -> ::core::result::Result<Self, #p::CodecError> { #never }
                fn __encode_json(&self)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #p::CodecError> { #never }
            }
            impl #impl_generics #p::Bind for #ident #ty_generics #bounds {
                type __Role = #p::#role;
                fn __bind_owned<H: #p::OwnedHandler<Self>>(_: &#p::States)
                    -> ::core::result::Result<#p::Binding, #p::MissingState> { #never }
            }
            #request
            impl #impl_generics #krate::#marker for #ident #ty_generics #bounds {}
            #side_effects
        };
    }
}
