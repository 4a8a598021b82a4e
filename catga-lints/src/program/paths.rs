//! Which declared message a handler's parameter type names, by path rather than by bare name.
//!
//! Matching by the last identifier lets a same-named type in another module or crate hide a
//! missing handler. This resolves a type path the way rustc does for the cases services write:
//! `crate::`, `self::`, `super::`, a crate name, a child module, a `use` (with renames, groups
//! and globs) and re-exports (`pub use orders::PlaceOrder;`) followed to the declaration. It is
//! not a full resolver: macro-generated items and type aliases are not seen, and a path it
//! cannot follow is reported as unresolved, in which case the caller falls back to the name.

use std::collections::{HashMap, HashSet};

use syn::{Type, UseTree};

/// An absolute path: the crate's name, then modules, then (for an item) its name.
pub(super) type AbsPath = Vec<String>;

/// What one module's `use` items bring into scope, as written (resolved when asked).
#[derive(Debug, Default)]
struct Scope {
    /// `use a::b::C as D;` → `D` → `a::b::C`.
    names: HashMap<String, Vec<String>>,
    /// `use a::b::*;` → `a::b`.
    globs: Vec<Vec<String>>,
}

/// The modules, `use` items and message declarations of the linted sources.
#[derive(Debug, Default)]
pub(super) struct Paths {
    scopes: HashMap<AbsPath, Scope>,
    modules: HashSet<AbsPath>,
    messages: HashSet<AbsPath>,
}

/// How deep re-exports and `use` chains are followed (a cycle of `use`s ends here too).
const MAX_HOPS: usize = 16;

impl Paths {
    /// Records a module (a file's, or an inline `mod`).
    pub(super) fn module(&mut self, module: &[String]) {
        self.modules.insert(module.to_vec());
    }

    /// Records a message declared in `module`.
    pub(super) fn message(&mut self, module: &[String], name: &str) -> AbsPath {
        let path = [module, &[name.to_string()]].concat();
        self.messages.insert(path.clone());
        path
    }

    /// Records a `use` item of `module`.
    pub(super) fn use_tree(&mut self, module: &[String], tree: &UseTree) {
        let scope = self.scopes.entry(module.to_vec()).or_default();
        walk_use(tree, &mut Vec::new(), scope);
    }

    /// The declared messages `ty` may name when written in `module`: `Some` with the matches
    /// (one unless globs make it ambiguous), or `None` when the path could not be followed.
    pub(super) fn messages_named(&self, module: &[String], ty: &Type) -> Option<Vec<AbsPath>> {
        let segments = type_path(ty)?;
        let mut found = Vec::new();
        for candidate in self.absolute(module, &segments, 0) {
            self.declaration(candidate, 0, &mut found);
        }
        found.sort();
        found.dedup();
        (!found.is_empty()).then_some(found)
    }

    /// The absolute paths `segments` may mean in `module` (several when a glob may supply the
    /// first segment).
    fn absolute(&self, module: &[String], segments: &[String], hops: usize) -> Vec<AbsPath> {
        // Nothing left: the path named the module itself (`use super::*;` globs `super`).
        let Some((first, rest)) = segments.split_first() else {
            return vec![module.to_vec()];
        };
        if hops > MAX_HOPS {
            return Vec::new();
        }
        let join = |base: &[String]| [base, rest].concat();
        match first.as_str() {
            "crate" => {
                return module
                    .first()
                    .map(|k| join(std::slice::from_ref(k)))
                    .into_iter()
                    .collect();
            }
            "self" => return vec![join(module)],
            "super" => {
                let parent = &module[..module.len().saturating_sub(1)];
                return self.absolute(parent, rest, hops + 1);
            }
            "::" => return vec![rest.to_vec()],
            _ => {}
        }
        let scope = self.scopes.get(module);
        if let Some(target) = scope.and_then(|s| s.names.get(first)) {
            // The `use` path is itself relative to this module (2018 uniform paths).
            return self
                .absolute(module, target, hops + 1)
                .into_iter()
                .map(|p| join(&p))
                .collect();
        }
        let child = [module, std::slice::from_ref(first)].concat();
        if self.modules.contains(&child) || self.messages.contains(&child) {
            return vec![join(&child)];
        }
        let mut candidates = Vec::new();
        if rest.is_empty() {
            for glob in scope.map(|s| s.globs.as_slice()).unwrap_or_default() {
                for base in self.absolute(module, glob, hops + 1) {
                    candidates.push([base.as_slice(), std::slice::from_ref(first)].concat());
                }
            }
        }
        // Otherwise a crate's name (a workspace crate, or one outside: then nothing matches).
        candidates.push(segments.to_vec());
        candidates
    }

    /// Follows re-exports from `path` to message declarations.
    fn declaration(&self, path: AbsPath, hops: usize, found: &mut Vec<AbsPath>) {
        if self.messages.contains(&path) {
            found.push(path);
            return;
        }
        let Some((name, module)) = path.split_last() else {
            return;
        };
        if hops > MAX_HOPS || !self.modules.contains(module) {
            return;
        }
        let Some(scope) = self.scopes.get(module) else {
            return;
        };
        if let Some(target) = scope.names.get(name) {
            for next in self.absolute(module, target, hops + 1) {
                self.declaration(next, hops + 1, found);
            }
        }
        for glob in &scope.globs {
            for base in self.absolute(module, glob, hops + 1) {
                let next = [base.as_slice(), std::slice::from_ref(name)].concat();
                self.declaration(next, hops + 1, found);
            }
        }
    }
}

/// The path segments of a type (`&crate::orders::PlaceOrder` → `crate`, `orders`,
/// `PlaceOrder`), with `::` first for a leading `::`.
fn type_path(ty: &Type) -> Option<Vec<String>> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let mut segments: Vec<String> = Vec::new();
            if p.path.leading_colon.is_some() {
                segments.push("::".to_string());
            }
            segments.extend(p.path.segments.iter().map(|s| s.ident.to_string()));
            Some(segments)
        }
        Type::Reference(r) => type_path(&r.elem),
        Type::Paren(p) => type_path(&p.elem),
        Type::Group(g) => type_path(&g.elem),
        _ => None,
    }
}

fn walk_use(tree: &UseTree, prefix: &mut Vec<String>, scope: &mut Scope) {
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            walk_use(&p.tree, prefix, scope);
            prefix.pop();
        }
        UseTree::Name(n) => {
            let name = n.ident.to_string();
            // `use a::b::{self}` names the module `b`.
            let (alias, path) = if name == "self" {
                (prefix.last().cloned(), prefix.clone())
            } else {
                (Some(name.clone()), [prefix.as_slice(), &[name]].concat())
            };
            if let Some(alias) = alias {
                scope.names.insert(alias, path);
            }
        }
        UseTree::Rename(r) => {
            let alias = r.rename.to_string();
            if alias != "_" {
                let name = r.ident.to_string();
                let path = if name == "self" {
                    prefix.clone()
                } else {
                    [prefix.as_slice(), &[name]].concat()
                };
                scope.names.insert(alias, path);
            }
        }
        UseTree::Glob(_) => scope.globs.push(prefix.clone()),
        UseTree::Group(g) => {
            for tree in &g.items {
                walk_use(tree, prefix, scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str) -> Vec<String> {
        path.split("::").map(String::from).collect()
    }

    fn ty(text: &str) -> Type {
        syn::parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn uses(paths: &mut Paths, m: &str, item: &str) {
        let item: syn::ItemUse = syn::parse_str(item).unwrap_or_else(|e| panic!("{item}: {e}"));
        paths.use_tree(&module(m), &item.tree);
    }

    /// Two crates each declare `PlaceOrder`; `app` re-exports one from a submodule.
    fn workspace() -> Paths {
        let mut paths = Paths::default();
        for m in ["shop", "shop::orders", "billing", "app", "app::handlers"] {
            paths.module(&module(m));
        }
        paths.message(&module("shop::orders"), "PlaceOrder");
        paths.message(&module("billing"), "PlaceOrder");
        uses(&mut paths, "shop", "pub use orders::PlaceOrder;");
        paths
    }

    fn resolve(paths: &Paths, m: &str, t: &str) -> Option<Vec<String>> {
        paths
            .messages_named(&module(m), &ty(t))
            .map(|found| found.iter().map(|p| p.join("::")).collect())
    }

    #[test]
    fn paths_resolve_to_the_declaration_they_name() {
        let mut paths = workspace();
        let shop = Some(vec!["shop::orders::PlaceOrder".to_string()]);
        let billing = Some(vec!["billing::PlaceOrder".to_string()]);
        assert_eq!(resolve(&paths, "shop::orders", "PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "shop", "orders::PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "shop", "PlaceOrder"), shop, "re-export");
        assert_eq!(resolve(&paths, "app", "shop::PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "app", "billing::PlaceOrder"), billing);
        assert_eq!(resolve(&paths, "app", "&::billing::PlaceOrder"), billing);
        assert_eq!(resolve(&paths, "shop::orders", "crate::PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "shop::orders", "self::PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "shop::orders", "super::PlaceOrder"), shop);
        assert_eq!(resolve(&paths, "app", "PlaceOrder"), None, "not in scope");

        uses(
            &mut paths,
            "app::handlers",
            "use billing::PlaceOrder as Place;",
        );
        assert_eq!(resolve(&paths, "app::handlers", "Place"), billing);
        uses(&mut paths, "app", "use shop::{self as s};");
        assert_eq!(resolve(&paths, "app", "s::PlaceOrder"), shop);
        uses(&mut paths, "app", "use billing::*;");
        assert_eq!(resolve(&paths, "app", "PlaceOrder"), billing, "glob");
        // A child module that globs its parent's names (`use super::*;`).
        uses(&mut paths, "app::handlers", "use super::*;");
        assert_eq!(
            resolve(&paths, "app::handlers", "PlaceOrder"),
            billing,
            "super glob"
        );
        paths.module(&module("shop::orders::inner"));
        uses(&mut paths, "shop::orders::inner", "use super::*;");
        assert_eq!(resolve(&paths, "shop::orders::inner", "PlaceOrder"), shop);
    }
}
