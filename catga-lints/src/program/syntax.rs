//! Small questions asked of syntax trees: derives, type names, `Ok` types, state types.

use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{Item, Type};

use crate::rules::handler::{self, Signature};

pub(super) fn tokens(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string().replace(' ', "")
}

/// The names in `#[derive(…)]`, last path segment only (`serde::Serialize` → `Serialize`).
pub(super) fn item_derives(item: &Item) -> Vec<String> {
    let attrs = match item {
        Item::Struct(s) => &s.attrs,
        Item::Enum(e) => &e.attrs,
        _ => return Vec::new(),
    };
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(last) = meta.path.segments.last() {
                names.push(last.ident.to_string());
            }
            Ok(())
        });
    }
    names
}

pub(super) fn has(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// The last identifier of a type path (`crate::orders::PlaceOrder` → `PlaceOrder`).
pub(super) fn last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        Type::Reference(r) => last_ident(&r.elem),
        Type::Paren(p) => last_ident(&p.elem),
        Type::Group(g) => last_ident(&g.elem),
        _ => None,
    }
}

/// A type as text with every path shortened to its last segment, so `Option<crate::Order>` and
/// `Option<Order>` compare equal.
pub(super) fn normalize(ty: &Type) -> String {
    struct Shorten;
    impl syn::visit_mut::VisitMut for Shorten {
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            path.leading_colon = None;
            while path.segments.len() > 1 {
                let last = path.segments.pop().map(syn::punctuated::Pair::into_value);
                path.segments = last.into_iter().collect();
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Shorten, &mut ty);
    tokens(&ty)
}

pub(super) enum OkType<'a> {
    Found(&'a Type),
    NotResult,
    Unknown,
}

/// The `Ok` type of a handler's return type: `Result<T, E>` (any path ending in `Result`),
/// or `Result<T>` of an alias with a fixed error.
pub(super) fn ok_type(ret: &Type) -> OkType<'_> {
    let Type::Path(p) = ret else {
        return OkType::NotResult;
    };
    let Some(last) = p.path.segments.last() else {
        return OkType::Unknown;
    };
    let name = last.ident.to_string();
    if !name.ends_with("Result") {
        // An alias such as `HandlerOutcome` may still be a `Result`; a well-known type is not.
        let known = [
            "Option", "Vec", "String", "bool", "u8", "u16", "u32", "u64", "i32", "i64", "usize",
        ];
        return if known.contains(&name.as_str()) {
            OkType::NotResult
        } else {
            OkType::Unknown
        };
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => match args.args.first() {
            Some(syn::GenericArgument::Type(ok)) => OkType::Found(ok),
            _ => OkType::Unknown,
        },
        _ => OkType::Unknown,
    }
}

/// The `&T` state a handler borrows (and the `impl` block's type for `&self`).
pub(super) fn state_types(sig: &Signature, self_ty: Option<&Type>) -> Vec<Type> {
    let mut types: Vec<Type> = self_ty.into_iter().cloned().collect();
    for param in &sig.params {
        if let handler::Param::State(ty) = param {
            types.push((**ty).clone());
        }
    }
    types
}

/// The thread-unsafe type a field holds outside any lock, if any.
pub(super) fn unsync(ty: &Type) -> Option<&'static str> {
    struct Find(Option<&'static str>);
    impl<'ast> Visit<'ast> for Find {
        fn visit_path_segment(&mut self, seg: &'ast syn::PathSegment) {
            if self.0.is_some() {
                return;
            }
            let name = seg.ident.to_string();
            if ["Mutex", "RwLock", "ReentrantMutex"].contains(&name.as_str()) {
                return; // Anything inside a lock is shared safely.
            }
            self.0 = match name.as_str() {
                "RefCell" => Some("RefCell"),
                "Cell" => Some("Cell"),
                "Rc" => Some("Rc"),
                "UnsafeCell" => Some("UnsafeCell"),
                _ => None,
            };
            visit::visit_path_segment(self, seg);
        }
    }
    let mut find = Find(None);
    find.visit_type(ty);
    find.0
}
