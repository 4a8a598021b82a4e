//! The impls of one checked message type, one function per impl.
//!
//! Everything generated sits in one `const _: () = { … };` block and names the runtime by
//! absolute path (`::catga_core`, or `crate = "…"`). The message's static facts (name, kind,
//! policy, decoders) go into one `static MessageInfo`, so a message costs one table entry and
//! a few small functions to compile, whatever its handlers.

use catga_lints::Kind;
use catga_lints::rules::message::MessageArgs;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;
use syn::spanned::Spanned;

/// A message type being implemented.
pub struct Message<'a> {
    kind: Kind,
    krate: &'a TokenStream,
    ident: &'a syn::Ident,
    args: &'a MessageArgs,
    /// The stable wire name: `name = "…"`, else the type's name.
    wire_name: String,
    /// The request's output type (`()` for an event).
    output: TokenStream,
}

impl<'a> Message<'a> {
    pub fn new(
        kind: Kind,
        krate: &'a TokenStream,
        ident: &'a syn::Ident,
        args: &'a MessageArgs,
    ) -> Self {
        let wire_name = args
            .name
            .as_ref()
            .map_or_else(|| ident.to_string(), LitStr::value);
        let output = match &args.output {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        };
        Message {
            kind,
            krate,
            ident,
            args,
            wire_name,
            output,
        }
    }

    /// Every impl, in one anonymous const block.
    pub fn impls(&self) -> TokenStream {
        let krate = self.krate;
        let ident = self.ident;
        let message = self.message_impl();
        let bind = self.bind_impl();
        let request = self.request_impl();
        let markers = self.marker_impls();
        quote! {
            const _: () = {
                #message
                #bind
                #request
                #markers

                #krate::__private::inventory::submit! {
                    #krate::__private::MessageDescriptor { info: <#ident as #krate::Message>::info }
                }
            };
        }
    }

    /// Whether the message crosses processes (not `local`): only then is wire code generated.
    fn wire(&self) -> bool {
        !self.args.local
    }

    /// The body of a codec function of a `local` message: it never reaches the wire.
    fn not_wire(&self) -> TokenStream {
        let krate = self.krate;
        let wire_name = &self.wire_name;
        quote!(::core::result::Result::Err(#krate::__private::CodecError::NotWire { name: #wire_name }))
    }

    /// `impl Message`: the static facts, the optional-trait probes and the codec functions.
    fn message_impl(&self) -> TokenStream {
        let krate = self.krate;
        let ident = self.ident;
        let output = &self.output;
        let wire_name = &self.wire_name;
        let variant = self.kind_variant();
        let info = self.info();
        let probes = probes(krate);
        let (decode, encode) = if self.wire() {
            (
                quote_spanned!(ident.span()=> <#ident as #krate::__private::WireDeserialize>::catga_decode(codec, bytes)),
                quote_spanned!(ident.span()=> <#ident as #krate::__private::WireSerialize>::catga_encode(self, codec)),
            )
        } else {
            (self.not_wire(), self.not_wire())
        };
        quote! {
            #[automatically_derived]
            impl #krate::Message for #ident {
                type Output = #output;
                const NAME: &'static str = #wire_name;
                const KIND: #krate::__private::MessageKind = #krate::__private::MessageKind::#variant;

                fn info() -> &'static #krate::__private::MessageInfo {
                    #info
                }

                #probes

                #[allow(unused_variables)]
                fn __decode<C: #krate::__private::Codec>(codec: &C, bytes: &[u8])
                    -> ::core::result::Result<Self, #krate::__private::CodecError> { #decode }

                #[allow(unused_variables)]
                fn __encode<C: #krate::__private::Codec>(&self, codec: &C)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::CodecError> { #encode }
            }
        }
    }

    /// The `MessageKind` variant.
    fn kind_variant(&self) -> TokenStream {
        match self.kind {
            Kind::Command => quote!(Command),
            Kind::Query => quote!(Query),
            Kind::Event => quote!(Event),
        }
    }

    /// The body of `Message::info`: one `static MessageInfo`.
    fn info(&self) -> TokenStream {
        let krate = self.krate;
        let ident = self.ident;
        let wire_name = &self.wire_name;
        let type_name = ident.to_string();
        let variant = self.kind_variant();
        let wire = self.wire();
        let policy = self.policy();
        let output_codec = if self.kind == Kind::Event {
            quote!(#krate::__private::EVENT_OUTPUT_JSON)
        } else {
            quote!(#krate::__private::request_output_json::<#ident>())
        };
        let location_line = quote_spanned!(ident.span()=> ::core::line!());
        quote! {
            static INFO: #krate::__private::MessageInfo = #krate::__private::MessageInfo::__new(
                #wire_name,
                #krate::__private::MessageKind::#variant,
                ::core::concat!(::core::module_path!(), "::", #type_name),
                ::core::file!(),
                #location_line,
                #wire,
                #policy,
                #krate::__private::decode_wire::<#ident>,
                #output_codec,
            );
            &INFO
        }
    }

    /// The per-message policy the behaviours read (`timeout`, `retry`, `rate_limit`, …).
    fn policy(&self) -> TokenStream {
        let krate = self.krate;
        let args = self.args;
        let some = |value: Option<TokenStream>| match value {
            Some(value) => quote!(::core::option::Option::Some(#value)),
            None => quote!(::core::option::Option::None),
        };
        let millis = |ms: Option<u64>| some(ms.map(|ms| quote!(#krate::__private::millis(#ms))));
        let timeout = millis(args.timeout_ms);
        let cache_ttl = millis(args.cache_ttl_ms);
        let retry = some(args.retry.map(|n| quote!(#n)));
        let rate_limit = some(
            args.rate_limit
                .map(|(count, ms)| quote!(#krate::__private::rate(#count, #ms))),
        );
        let max_in_flight = some(args.concurrency.map(|n| quote!(#n)));
        let bulkhead = some(args.bulkhead.as_ref().map(|name| quote!(#name)));
        let idempotent = args.idempotent;
        let skip = args.skip;
        // Each event is named by type, so a typo is a compile error at the name.
        let invalidated_by = args
            .invalidated_by
            .iter()
            .map(|ty| quote_spanned!(ty.span()=> #krate::__private::event_info::<#ty>));
        quote! {
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
            }
        }
    }

    /// `impl Bind`: how `#[handler]` binds a handler of this message (hidden glue).
    fn bind_impl(&self) -> TokenStream {
        let krate = self.krate;
        let ident = self.ident;
        let p = quote!(#krate::__private);
        let (role, bind_owned, bind_borrowed) = if self.kind == Kind::Event {
            (
                quote!(EventRole),
                quote!(#p::bind_event::<Self, H>(states)),
                quote! {
                    fn __bind_borrowed<H: #p::EventHandler<Self>>(
                        states: &#p::States,
                    ) -> ::core::result::Result<#p::Binding, #p::MissingState> {
                        #p::bind_event::<Self, H>(states)
                    }
                },
            )
        } else {
            (
                quote!(RequestRole),
                quote!(#p::bind_request::<Self, H>(states)),
                quote!(),
            )
        };
        quote! {
            #[automatically_derived]
            impl #p::Bind for #ident {
                type __Role = #p::#role;

                fn __bind_owned<H: #p::OwnedHandler<Self>>(
                    states: &#p::States,
                ) -> ::core::result::Result<#p::Binding, #p::MissingState> {
                    #bind_owned
                }

                #bind_borrowed
            }
        }
    }

    /// `impl Request` for a command or query: the output's codec functions.
    fn request_impl(&self) -> TokenStream {
        if self.kind == Kind::Event {
            return TokenStream::new();
        }
        let krate = self.krate;
        let ident = self.ident;
        let output = &self.output;
        let (encode, decode) = if self.wire() {
            let span = self
                .args
                .output
                .as_ref()
                .map_or(ident.span(), |ty| ty.span());
            (
                quote_spanned!(span=> <#output as #krate::__private::WireSerialize>::catga_encode(output, codec)),
                quote_spanned!(span=> <#output as #krate::__private::WireDeserialize>::catga_decode(codec, bytes)),
            )
        } else {
            (self.not_wire(), self.not_wire())
        };
        quote! {
            #[automatically_derived]
            impl #krate::Request for #ident {
                #[allow(unused_variables)]
                fn __encode_output<C: #krate::__private::Codec>(codec: &C, output: &#output)
                    -> ::core::result::Result<::std::vec::Vec<u8>, #krate::__private::CodecError> { #encode }
                #[allow(unused_variables)]
                fn __decode_output<C: #krate::__private::Codec>(codec: &C, bytes: &[u8])
                    -> ::core::result::Result<#output, #krate::__private::CodecError> { #decode }
            }
        }
    }

    /// The kind's marker trait, and whether a handler's context may publish the message
    /// (commands and events may; queries may not: CATGA050).
    fn marker_impls(&self) -> TokenStream {
        let krate = self.krate;
        let ident = self.ident;
        let marker = self.kind_variant();
        let side_effects = if self.kind == Kind::Query {
            quote!()
        } else {
            quote! {
                #[automatically_derived]
                impl #krate::__private::SideEffectsAllowed for #ident {}
            }
        };
        quote! {
            #[automatically_derived]
            impl #krate::#marker for #ident {}
            #side_effects
        }
    }
}

/// The `Message` methods that find the type's optional traits (`Clone`, `IdempotencyKey`,
/// `CacheKey`, `Validate`) by autoref specialisation: the trait's impl if there is one, a
/// default otherwise.
fn probes(krate: &TokenStream) -> TokenStream {
    let p = quote!(#krate::__private);
    quote! {
        #[inline]
        fn __try_clone(&self) -> ::core::option::Option<Self> {
            #[allow(unused_imports)]
            use #p::{NoClone as _, ViaClone as _};
            (&&#p::Probe(self)).catga_clone()
        }

        #[inline]
        fn __idempotency_key(&self) -> ::core::option::Option<::std::string::String> {
            #[allow(unused_imports)]
            use #p::{NoIdempotencyKey as _, ViaIdempotencyKey as _};
            (&&#p::Probe(self)).catga_idempotency_key()
        }

        #[inline]
        fn __cache_key(&self) -> ::core::option::Option<::std::string::String> {
            #[allow(unused_imports)]
            use #p::{NoCacheKey as _, ViaCacheKey as _};
            (&&#p::Probe(self)).catga_cache_key()
        }

        #[inline]
        fn __validate(&self) -> ::core::result::Result<(), #p::ValidationErrors> {
            #[allow(unused_imports)]
            use #p::{NoValidate as _, ViaValidate as _};
            (&&#p::Probe(self)).catga_validate()
        }
    }
}
