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
                use #krate::__private as __catga;
                #[allow(unused_imports)]
                use __catga::probes::in_scope::*;
                #message
                #bind
                #request
                #markers

                __catga::inventory::submit! {
                    __catga::MessageDescriptor { info: <#ident as __catga::Message>::info }
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
        let wire_name = &self.wire_name;
        quote!(__catga::Err(__catga::CodecError::NotWire { name: #wire_name }))
    }

    /// `impl Message`: the static facts, the optional-trait probes and the codec functions.
    fn message_impl(&self) -> TokenStream {
        let ident = self.ident;
        let output = &self.output;
        let wire_name = &self.wire_name;
        let variant = self.kind_variant();
        let info = self.info();
        let probes = probes();
        let (decode, encode) = if self.wire() {
            (
                quote_spanned!(ident.span()=> <#ident as __catga::WireDeserialize>::catga_decode(&__catga::Json, __catga_json)),
                quote_spanned!(ident.span()=> <#ident as __catga::WireSerialize>::catga_encode(self, &__catga::Json)),
            )
        } else {
            (self.not_wire(), self.not_wire())
        };
        quote! {
            #[automatically_derived]
            impl __catga::Message for #ident {
                type Output = #output;
                const NAME: &'static str = #wire_name;
                const KIND: __catga::MessageKind = __catga::MessageKind::#variant;

                fn info() -> &'static __catga::MessageInfo {
                    #info
                }

                #probes

                fn __decode_json(__catga_json: &[u8])
                    -> __catga::Result<Self, __catga::CodecError> { #decode }

                fn __encode_json(&self)
                    -> __catga::Result<__catga::Vec<u8>, __catga::CodecError> { #encode }
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
        let ident = self.ident;
        let wire_name = &self.wire_name;
        let type_name = ident.to_string();
        let variant = self.kind_variant();
        let wire = self.wire();
        let policy = self.policy();
        let output_codec = if self.kind == Kind::Event {
            quote!(__catga::EVENT_OUTPUT_JSON)
        } else {
            quote!(__catga::request_output_json::<#ident>())
        };
        let location_line = quote_spanned!(ident.span()=> ::core::line!());
        quote! {
            static INFO: __catga::MessageInfo = __catga::MessageInfo::__new(
                #wire_name,
                __catga::MessageKind::#variant,
                ::core::concat!(::core::module_path!(), "::", #type_name),
                ::core::file!(),
                #location_line,
                #wire,
                #policy,
                __catga::decode_wire::<#ident>,
                #output_codec,
            );
            &INFO
        }
    }

    /// The per-message policy the behaviours read (`timeout`, `retry`, `rate_limit`, …): the
    /// fields the attribute sets, the rest from `MessagePolicy::DEFAULT`.
    fn policy(&self) -> TokenStream {
        let args = self.args;
        let millis = |ms: u64| quote!(__catga::Some(__catga::millis(#ms)));
        let mut fields = Vec::new();
        if let Some(ms) = args.timeout_ms {
            let value = millis(ms);
            fields.push(quote!(timeout: #value));
        }
        if let Some(n) = args.retry {
            fields.push(quote!(max_attempts: __catga::Some(#n)));
        }
        if args.idempotent {
            fields.push(quote!(idempotent: true));
        }
        if args.skip != 0 {
            let skip = args.skip;
            fields.push(quote!(skip: __catga::Skip::from_bits(#skip)));
        }
        if let Some((count, ms)) = args.rate_limit {
            fields.push(quote!(rate_limit: __catga::Some(__catga::rate(#count, #ms))));
        }
        if let Some(n) = args.concurrency {
            fields.push(quote!(max_in_flight: __catga::Some(#n)));
        }
        if let Some(name) = &args.bulkhead {
            fields.push(quote!(bulkhead: __catga::Some(#name)));
        }
        if let Some(ms) = args.cache_ttl_ms {
            let value = millis(ms);
            fields.push(quote!(cache_ttl: #value));
        }
        if !args.invalidated_by.is_empty() {
            // Each event is named by type, so a typo is a compile error at the name.
            let events = args
                .invalidated_by
                .iter()
                .map(|ty| quote_spanned!(ty.span()=> __catga::event_info::<#ty>));
            fields.push(quote!(invalidated_by: &[#(#events),*]));
        }
        if fields.is_empty() {
            return quote!(__catga::MessagePolicy::DEFAULT);
        }
        quote!(__catga::MessagePolicy { #(#fields,)* ..__catga::MessagePolicy::DEFAULT })
    }

    /// `impl Bind`: how `#[handler]` binds a handler of this message (hidden glue).
    fn bind_impl(&self) -> TokenStream {
        let ident = self.ident;
        let p = quote!(__catga);
        let (role, bind_owned, bind_borrowed) = if self.kind == Kind::Event {
            (
                quote!(EventRole),
                quote!(#p::bind_event::<Self, H>(__catga_states)),
                quote! {
                    fn __bind_borrowed<H: #p::EventHandler<Self>>(
                        __catga_states: &#p::States,
                    ) -> __catga::Result<#p::Binding, #p::MissingState> {
                        #p::bind_event::<Self, H>(__catga_states)
                    }
                },
            )
        } else {
            (
                quote!(RequestRole),
                quote!(#p::bind_request::<Self, H>(__catga_states)),
                quote!(),
            )
        };
        quote! {
            #[automatically_derived]
            impl #p::Bind for #ident {
                type __Role = #p::#role;

                fn __bind_owned<H: #p::OwnedHandler<Self>>(
                    __catga_states: &#p::States,
                ) -> __catga::Result<#p::Binding, #p::MissingState> {
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
        let ident = self.ident;
        let output = &self.output;
        let (encode, decode) = if self.wire() {
            let span = self
                .args
                .output
                .as_ref()
                .map_or(ident.span(), |ty| ty.span());
            (
                quote_spanned!(span=> <#output as __catga::WireSerialize>::catga_encode(__catga_output, &__catga::Json)),
                quote_spanned!(span=> <#output as __catga::WireDeserialize>::catga_decode(&__catga::Json, __catga_json)),
            )
        } else {
            (self.not_wire(), self.not_wire())
        };
        quote! {
            #[automatically_derived]
            impl __catga::Request for #ident {
                fn __encode_output_json(__catga_output: &#output)
                    -> __catga::Result<__catga::Vec<u8>, __catga::CodecError> { #encode }
                fn __decode_output_json(__catga_json: &[u8])
                    -> __catga::Result<#output, __catga::CodecError> { #decode }
            }
        }
    }

    /// The kind's marker trait, and whether a handler's context may publish the message
    /// (commands and events may; queries may not: CATGA050).
    fn marker_impls(&self) -> TokenStream {
        let ident = self.ident;
        let marker = self.kind_variant();
        let side_effects = if self.kind == Kind::Query {
            quote!()
        } else {
            quote! {
                #[automatically_derived]
                impl __catga::SideEffectsAllowed for #ident {}
            }
        };
        quote! {
            #[automatically_derived]
            impl __catga::#marker for #ident {}
            #side_effects
        }
    }
}

/// The `Message` methods that find the type's optional traits (`Clone`, `IdempotencyKey`,
/// `CacheKey`, `Validate`) by autoref specialisation: the trait's impl if there is one, a
/// default otherwise.
fn probes() -> TokenStream {
    quote! {
        #[inline]
        fn __try_clone(&self) -> __catga::Option<Self> {
            (&&__catga::Probe(self)).catga_clone()
        }

        #[inline]
        fn __idempotency_key(&self) -> __catga::Option<::std::string::String> {
            (&&__catga::Probe(self)).catga_idempotency_key()
        }

        #[inline]
        fn __cache_key(&self) -> __catga::Option<::std::string::String> {
            (&&__catga::Probe(self)).catga_cache_key()
        }

        #[inline]
        fn __validate(&self) -> __catga::Result<(), __catga::ValidationErrors> {
            (&&__catga::Probe(self)).catga_validate()
        }
    }
}
