//! `#[command]`, `#[query]`, `#[event]`: parse the arguments and the type, check them, then
//! implement the message traits and submit a descriptor.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, LitInt, LitStr, Type};

use crate::args::{Errors, crate_path};
use crate::duration::parse_millis;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Command,
    Query,
    Event,
}

impl Kind {
    fn attr(self) -> &'static str {
        match self {
            Kind::Command => "command",
            Kind::Query => "query",
            Kind::Event => "event",
        }
    }
}

#[derive(Default)]
struct Args {
    output: Option<Type>,
    name: Option<LitStr>,
    krate: Option<LitStr>,
    local: bool,
    timeout_ms: Option<u64>,
    retry: Option<u32>,
}

fn parse_args(kind: Kind, tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let attr = kind.attr();
    let parser = syn::meta::parser(|meta| {
        let key = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        match key.as_str() {
            "output" if kind == Kind::Event => {
                let _: Type = meta.value()?.parse()?;
                errors.spanned(
                    &meta.path,
                    "events have no reply, so `output` is not allowed here\n  \
                     help: remove `output = …`, or make the message a `#[command(output = …)]`",
                );
            }
            "output" => args.output = Some(meta.value()?.parse()?),
            "name" => {
                let lit: LitStr = meta.value()?.parse()?;
                if let Some(problem) = wire_name_problem(&lit.value()) {
                    errors.spanned(&lit, format!("{problem}\n  help: use letters, digits and `.` `_` `-` `:` `/`, e.g. `name = \"orders.place\"`"));
                }
                args.name = Some(lit);
            }
            "crate" => args.krate = Some(meta.value()?.parse()?),
            "local" => args.local = true,
            "timeout" => {
                let lit: LitStr = meta.value()?.parse()?;
                match parse_millis(&lit.value()) {
                    Ok(ms) => args.timeout_ms = Some(ms),
                    Err(why) => errors.spanned(
                        &lit,
                        format!("invalid timeout: {why}\n  help: write e.g. `timeout = \"250ms\"`, `\"5s\"`, `\"2m\"`"),
                    ),
                }
            }
            "retry" => {
                let lit: LitInt = meta.value()?.parse()?;
                match lit.base10_parse::<u32>() {
                    Ok(0) | Err(_) => errors.spanned(
                        &lit,
                        "`retry` is the number of attempts in all and must be at least 1\n  \
                         help: write `retry = 1` to never retry this message",
                    ),
                    Ok(n) => args.retry = Some(n),
                }
            }
            _ => {
                let valid = if kind == Kind::Event {
                    "`name`, `local`, `timeout`, `retry`, `crate`"
                } else {
                    "`output`, `name`, `local`, `timeout`, `retry`, `crate`"
                };
                errors.spanned(
                    &meta.path,
                    format!(
                        "unknown `#[{attr}]` argument `{}`\n  help: valid arguments are {valid}",
                        path_text(&meta.path)
                    ),
                );
                // Skip the value, if any, so parsing can go on and report later errors too.
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    if kind == Kind::Query && args.output.is_none() {
        errors.at(
            Span::call_site(),
            "a query must declare what it returns\n  help: write `#[query(output = T)]`",
        );
    }
    args
}

fn wire_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a wire name cannot be empty");
    }
    if name.len() > 200 {
        return Some("a wire name must be at most 200 bytes");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/');
    if !name.chars().all(ok) {
        return Some("a wire name may not contain spaces or other special characters");
    }
    None
}

pub fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return e.to_compile_error(),
    };
    let args = parse_args(kind, args, &mut errors);
    let krate = crate_path(args.krate.as_ref(), &mut errors);

    let (ident, generics) = match &item {
        Item::Struct(s) => (&s.ident, &s.generics),
        Item::Enum(e) => (&e.ident, &e.generics),
        other => {
            errors.spanned(
                other,
                format!("`#[{}]` goes on a struct or an enum", kind.attr()),
            );
            return quote!(#item)
                .into_iter()
                .chain(errors.into_compile_errors())
                .collect();
        }
    };
    if let Some(lt) = generics.lifetimes().next() {
        errors.spanned(
            lt,
            "a message cannot borrow: it may cross tasks, threads and processes\n  \
             help: own the data instead (`String` rather than `&str`, `Vec<T>` rather than `&[T]`)",
        );
    } else if !generics.params.is_empty() {
        errors.spanned(
            &generics.params,
            "a message cannot be generic: each message type needs one wire name and one dispatch slot\n  \
             help: declare one concrete type per message",
        );
    }
    if !errors.is_empty() {
        return quote!(#item)
            .into_iter()
            .chain(errors.into_compile_errors())
            .collect();
    }

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
    let bind_owned = if kind == Kind::Event {
        quote!(#krate::__private::bind_event::<Self, H>(states))
    } else {
        quote!(#krate::__private::bind_request::<Self, H>(states))
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
    let retry = match args.retry {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let location_line = quote_spanned!(ident.span()=> ::core::line!());

    quote! {
        #item

        const _: () = {
            #[automatically_derived]
            impl #krate::Message for #ident {
                type Output = #output;
                const NAME: &'static str = #wire_name;
                const KIND: #krate::__private::MessageKind = #krate::__private::MessageKind::#kind_variant;
                type __Role = #krate::__private::#role;

                fn info() -> &'static #krate::__private::MessageInfo {
                    static INFO: #krate::__private::MessageInfo = #krate::__private::MessageInfo::__new(
                        #wire_name,
                        #krate::__private::MessageKind::#kind_variant,
                        ::core::concat!(::core::module_path!(), "::", #type_name),
                        ::core::file!(),
                        #location_line,
                        #wire,
                        #krate::__private::MessagePolicy { timeout: #timeout, max_attempts: #retry },
                        #krate::__private::decode_json::<#ident>,
                    );
                    &INFO
                }

                fn __bind_owned<H: #krate::__private::OwnedHandler<Self>>(
                    states: &#krate::__private::States,
                ) -> ::core::result::Result<#krate::__private::Binding, #krate::__private::MissingState> {
                    #bind_owned
                }

                #[inline]
                fn __try_clone(&self) -> ::core::option::Option<Self> {
                    #[allow(unused_imports)]
                    use #krate::__private::{NoClone as _, ViaClone as _};
                    (&&#krate::__private::Probe(self)).catga_clone()
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

            #request_impl
            #kind_traits

            #krate::__private::inventory::submit! {
                #krate::__private::MessageDescriptor { info: <#ident as #krate::Message>::info }
            }
        };
    }
}

fn path_text(path: &syn::Path) -> String {
    quote!(#path).to_string().replace(' ', "")
}
