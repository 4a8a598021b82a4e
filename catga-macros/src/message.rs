//! `#[command]`, `#[query]`, `#[event]`: parse the arguments and the type, check them, then
//! implement the message traits and submit a descriptor.

use catga_lints::Kind;
use catga_lints::rules::message::{self as rules, MessageArgs};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, LitStr};

use crate::args::Errors;
use crate::lint;

pub fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let mut findings = Vec::new();
    let args = MessageArgs::parse(kind, args, proc_macro2::Span::call_site(), &mut findings);
    let krate = match args.krate.as_ref().map(|lit| lit.parse::<syn::Path>()) {
        Some(Ok(path)) => quote!(#path),
        _ => quote!(::catga_core),
    };
    let ident = rules::check_shape(kind, &item, &mut findings);
    if ident.is_some() {
        rules::check_size(&item, &args, &mut findings);
    }
    let warnings = lint::emit(&findings, |rule| args.allows(rule), &mut errors);
    let Some(ident) = ident else {
        // A rejected shape (generic, borrowing) still gets stand-in impls, so the type's uses
        // type-check and the one error above is the only one the user reads.
        let stand_in = stand_in(kind, &krate, &item, &args);
        return quote!(#item #stand_in)
            .into_iter()
            .chain(errors.into_compile_errors())
            .collect();
    };

    // Argument errors are reported, but the message is still implemented (with defaults for
    // what was wrong), so its uses do not add a cascade of "not a message" errors.
    let errors = errors.into_compile_errors();

    let type_name = ident.to_string();
    let wire_name = args.name.as_ref().map_or(type_name.clone(), LitStr::value);
    let output = match (&args.output, kind) {
        (Some(ty), _) => quote!(#ty),
        (None, _) => quote!(()),
    };
    let (kind_variant, role, kind_traits) = match kind {
        Kind::Command => (
            quote!(Command),
            quote!(RequestRole),
            quote! {
                #[automatically_derived]
                impl #krate::Command for #ident {}
            },
        ),
        Kind::Query => (
            quote!(Query),
            quote!(RequestRole),
            quote! {
                #[automatically_derived]
                impl #krate::Query for #ident {}
            },
        ),
        Kind::Event => (
            quote!(Event),
            quote!(EventRole),
            quote! {
                #[automatically_derived]
                impl #krate::Event for #ident {}
            },
        ),
    };
    let (bind_owned, bind_borrowed) = if kind == Kind::Event {
        (
            quote!(#krate::__private::bind_event::<Self, H>(states)),
            quote! {
                fn __bind_borrowed<H: #krate::__private::EventHandler<Self>>(
                    states: &#krate::__private::States,
                ) -> ::core::result::Result<#krate::__private::Binding, #krate::__private::MissingState> {
                    #krate::__private::bind_event::<Self, H>(states)
                }
            },
        )
    } else {
        (
            quote!(#krate::__private::bind_request::<Self, H>(states)),
            quote!(),
        )
    };
    let wire = !args.local;
    let (decode, encode) = if wire {
        (
            quote_spanned!(ident.span()=> <#ident as #krate::__private::WireDeserialize>::catga_decode(codec, bytes)),
            quote_spanned!(ident.span()=> <#ident as #krate::__private::WireSerialize>::catga_encode(self, codec)),
        )
    } else {
        let not_wire = quote!(::core::result::Result::Err(#krate::__private::CodecError::NotWire { name: #wire_name }));
        (not_wire.clone(), not_wire)
    };
    let request_impl = if kind == Kind::Event {
        quote!()
    } else {
        let (enc_out, dec_out) = if wire {
            let span = args.output.as_ref().map_or(ident.span(), |ty| ty.span());
            (
                quote_spanned!(span=> <#output as #krate::__private::WireSerialize>::catga_encode(output, codec)),
                quote_spanned!(span=> <#output as #krate::__private::WireDeserialize>::catga_decode(codec, bytes)),
            )
        } else {
            let not_wire = quote!(::core::result::Result::Err(#krate::__private::CodecError::NotWire { name: #wire_name }));
            (not_wire.clone(), not_wire)
        };
        quote! {
            #[automatically_derived]
            impl #krate::Request for #ident {
                #[allow(unused_variables)]
                fn __encode_output<C: #krate::__private::Codec>(codec: &C, output: &#output)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::CodecError> { #enc_out }
                #[allow(unused_variables)]
                fn __decode_output<C: #krate::__private::Codec>(codec: &C, bytes: &[u8])
                    -> ::core::result::Result<#output, #krate::__private::CodecError> { #dec_out }
            }
        }
    };
    let timeout = match args.timeout_ms {
        Some(ms) => quote!(::core::option::Option::Some(#krate::__private::millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    let idempotent = args.idempotent;
    let retry = match args.retry {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let skip = args.skip;
    let rate_limit = match args.rate_limit {
        Some((count, ms)) => {
            quote!(::core::option::Option::Some(#krate::__private::rate(#count, #ms)))
        }
        None => quote!(::core::option::Option::None),
    };
    let max_in_flight = match args.concurrency {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let bulkhead = match &args.bulkhead {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let cache_ttl = match args.cache_ttl_ms {
        Some(ms) => quote!(::core::option::Option::Some(#krate::__private::millis(#ms))),
        None => quote!(::core::option::Option::None),
    };
    // Each event is named by type, so a typo is a compile error at the name.
    let invalidated_by = args
        .invalidated_by
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> #krate::__private::event_info::<#ty>));
    let output_codec = if kind == Kind::Event {
        quote!(#krate::__private::EVENT_OUTPUT_JSON)
    } else {
        quote!(#krate::__private::request_output_json::<#ident>())
    };
    let location_line = quote_spanned!(ident.span()=> ::core::line!());
    // Commands and events may be published from a handler's context; queries may not (CATGA050).
    let side_effects = if kind == Kind::Query {
        quote!()
    } else {
        quote! {
            #[automatically_derived]
            impl #krate::__private::SideEffectsAllowed for #ident {}
        }
    };

    quote! {
        #item
        #warnings
        #errors

        const _: () = {
            #[automatically_derived]
            impl #krate::Message for #ident {
                type Output = #output;
                const NAME: &'static str = #wire_name;
                const KIND: #krate::__private::MessageKind = #krate::__private::MessageKind::#kind_variant;

                fn info() -> &'static #krate::__private::MessageInfo {
                    static INFO: #krate::__private::MessageInfo = #krate::__private::MessageInfo::__new(
                        #wire_name,
                        #krate::__private::MessageKind::#kind_variant,
                        ::core::concat!(::core::module_path!(), "::", #type_name),
                        ::core::file!(),
                        #location_line,
                        #wire,
                        #krate::__private::MessagePolicy {
                            timeout: #timeout,
                            max_attempts: #retry,
                            idempotent: #idempotent,
                            skip: #krate::__private::Skip::from_bits(#skip),
                            rate_limit: #rate_limit,
                            max_in_flight: #max_in_flight,
                            bulkhead: #bulkhead,
                            cache_ttl: #cache_ttl,
                            invalidated_by: &[#(#invalidated_by),*],
                        },
                        #krate::__private::decode_wire::<#ident>,
                        #output_codec,
                    );
                    &INFO
                }


                #[inline]
                fn __try_clone(&self) -> ::core::option::Option<Self> {
                    #[allow(unused_imports)]
                    use #krate::__private::{NoClone as _, ViaClone as _};
                    (&&#krate::__private::Probe(self)).catga_clone()
                }

                #[inline]
                fn __idempotency_key(&self) -> ::core::option::Option<::std::string::String> {
                    #[allow(unused_imports)]
                    use #krate::__private::{NoIdempotencyKey as _, ViaIdempotencyKey as _};
                    (&&#krate::__private::Probe(self)).catga_idempotency_key()
                }

                #[inline]
                fn __cache_key(&self) -> ::core::option::Option<::std::string::String> {
                    #[allow(unused_imports)]
                    use #krate::__private::{NoCacheKey as _, ViaCacheKey as _};
                    (&&#krate::__private::Probe(self)).catga_cache_key()
                }

                #[inline]
                fn __validate(&self) -> ::core::result::Result<(), #krate::__private::ValidationErrors> {
                    #[allow(unused_imports)]
                    use #krate::__private::{NoValidate as _, ViaValidate as _};
                    (&&#krate::__private::Probe(self)).catga_validate()
                }

                #[allow(unused_variables)]
                fn __decode<C: #krate::__private::Codec>(codec: &C, bytes: &[u8])
                    -> ::core::result::Result<Self, #krate::__private::CodecError> { #decode }

                #[allow(unused_variables)]
                fn __encode<C: #krate::__private::Codec>(&self, codec: &C)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::CodecError> { #encode }
            }

            #[automatically_derived]
            impl #krate::__private::Bind for #ident {
                type __Role = #krate::__private::#role;

                fn __bind_owned<H: #krate::__private::OwnedHandler<Self>>(
                    states: &#krate::__private::States,
                ) -> ::core::result::Result<#krate::__private::Binding, #krate::__private::MissingState> {
                    #bind_owned
                }

                #bind_borrowed
            }

            #request_impl
            #kind_traits
            #side_effects

            #krate::__private::inventory::submit! {
                #krate::__private::MessageDescriptor { info: <#ident as #krate::Message>::info }
            }
        };
    }
}

/// Impls of the message traits for a type whose shape the macro rejected (generic, or
/// borrowing), carrying its generics and satisfied wherever the type could be a message at
/// all. The crate already fails to compile with the shape error, so the bodies never run;
/// they exist only so that every use of the type does not add a "not a message" error.
fn stand_in(kind: Kind, krate: &TokenStream, item: &Item, args: &MessageArgs) -> TokenStream {
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
                fn __encode_output<C: #p::Codec>(_: &C, _: &Self::Output)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #p::CodecError> { #never }
                fn __decode_output<C: #p::Codec>(_: &C, _: &[u8])
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
                fn __decode<C: #p::Codec>(_: &C, _: &[u8])
                    -> ::core::result::Result<Self, #p::CodecError> { #never }
                fn __encode<C: #p::Codec>(&self, _: &C)
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
