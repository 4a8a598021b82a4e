//! CATGA056: a workspace library with handlers that an executable depends on but never names.
//!
//! rustc loads a dependency only when code names it (a path, a `use`, an `extern crate`), and
//! an unloaded crate's `#[handler]` registrations are not in the executable: `build()` then
//! finds no handler. A `Cargo.toml` line is not enough, so this rule follows what each
//! executable's code names, crate by crate, and reports a handler crate it never reaches.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::{self, Visit};

use crate::catalog;
use crate::finding::Finding;

use super::Program;

/// The workspace's crates as the linking rule needs them: which files each is made of and
/// which workspace libraries it depends on, by the name its code uses for them. `F` is a file
/// (a path while discovering, an index into the sources after).
#[derive(Debug)]
pub struct Crates<F> {
    /// Libraries, named as code names them (`my_handlers`).
    pub libraries: Vec<CrateFiles<F>>,
    /// Binaries, tests, examples and benches: what ends up as an executable.
    pub executables: Vec<CrateFiles<F>>,
}

impl<F> Default for Crates<F> {
    fn default() -> Self {
        Crates {
            libraries: Vec::new(),
            executables: Vec::new(),
        }
    }
}

/// One crate of the workspace.
#[derive(Debug)]
pub struct CrateFiles<F> {
    /// A library's name as code writes it (`my_handlers`); an executable's target, as shown
    /// in the finding (`` bin `app` of `shop` ``).
    pub name: String,
    /// Its own modules (for a library, not its dependencies').
    pub files: Vec<F>,
    /// The workspace libraries it depends on, by the name its code uses (`my_handlers`).
    pub depends: Vec<String>,
}

impl<F> Crates<F> {
    /// The same crates with each file mapped by `f` (files it maps to `None` are dropped).
    pub fn map<G>(self, f: impl Fn(&F) -> Option<G>) -> Crates<G> {
        let each = |c: CrateFiles<F>| CrateFiles {
            name: c.name,
            files: c.files.iter().filter_map(&f).collect(),
            depends: c.depends,
        };
        Crates {
            libraries: self.libraries.into_iter().map(each).collect(),
            executables: self.executables.into_iter().map(each).collect(),
        }
    }
}

/// Reports, once per library, the executables that depend on it without naming it.
pub(super) fn unlinked_handlers(program: &Program, out: &mut Vec<(usize, Finding)>) {
    let libraries: BTreeMap<&str, &CrateFiles<usize>> = program
        .crates
        .libraries
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect();
    let mut named_of: BTreeMap<usize, Named> = BTreeMap::new();
    let mut named = |file: usize| -> Named {
        named_of
            .entry(file)
            .or_insert_with(|| {
                program
                    .sources
                    .get(file)
                    .map(|s| Named::in_file(&s.ast))
                    .unwrap_or_default()
            })
            .clone()
    };
    // Library name → the executables that miss it.
    let mut missed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for exe in &program.crates.executables {
        let depended = closure(&exe.depends, &libraries);
        let mut reached: BTreeSet<&str> = BTreeSet::new();
        let mut builds_app = false;
        let mut files: Vec<usize> = exe.files.clone();
        while let Some(file) = files.pop() {
            let named = named(file);
            builds_app |= named.app;
            for root in named.roots {
                if let Some((name, lib)) = libraries.get_key_value(root.as_str())
                    && depended.contains(name)
                    && reached.insert(name)
                {
                    files.extend(lib.files.iter().copied());
                }
            }
        }
        // An executable that never builds an application (a test of something else, a tool)
        // does not miss any handler.
        if !builds_app {
            continue;
        }
        for name in depended.difference(&reached) {
            missed.entry(name).or_default().push(&exe.name);
        }
    }
    for (name, executables) in missed {
        let Some(lib) = libraries.get(name) else {
            continue;
        };
        let handlers: Vec<_> = program
            .handlers
            .iter()
            .filter(|h| lib.files.contains(&h.source))
            .collect();
        let Some(first) = handlers.first() else {
            continue;
        };
        let names: Vec<String> = handlers
            .iter()
            .take(3)
            .map(|h| format!("`{}`", h.name))
            .collect();
        let more = if handlers.len() > 3 { ", …" } else { "" };
        out.push((
            first.source,
            Finding::new(
                &catalog::UNLINKED_HANDLERS,
                first.sig.ident.span(),
                format!(
                    "{} depend{} on `{name}` but never name{} it, so the linker leaves out its handlers ({}{more})",
                    executables.join(", "),
                    if executables.len() == 1 { "s" } else { "" },
                    if executables.len() == 1 { "s" } else { "" },
                    names.join(", "),
                ),
            )
            .with_help(format!(
                "name the crate once in {}, e.g. `use {name} as _;` next to `main`",
                if executables.len() == 1 { "it" } else { "each of them" }
            )),
        ));
    }
}

/// Every workspace library reachable from `direct` through library dependencies.
fn closure<'a>(
    direct: &[String],
    libraries: &BTreeMap<&'a str, &CrateFiles<usize>>,
) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = direct.iter().map(String::as_str).collect();
    while let Some(name) = stack.pop() {
        if let Some((key, lib)) = libraries.get_key_value(name)
            && seen.insert(*key)
        {
            stack.extend(lib.depends.iter().map(String::as_str));
        }
    }
    seen
}

/// What a file's code names.
#[derive(Clone, Debug, Default)]
struct Named {
    /// The first segment of every path: what it may name a crate by.
    roots: BTreeSet<String>,
    /// Whether it builds an application (names `Catga`, `StaticCatga` or `static_app`).
    app: bool,
}

/// Names that build an application whose handlers come from the linked crates.
const APP_NAMES: &[&str] = &["Catga", "StaticCatga", "static_app"];

impl Named {
    /// Paths inside macro calls are read from their tokens (`ident ::`).
    fn in_file(file: &syn::File) -> Named {
        let mut named = Named::default();
        named.visit_file(file);
        named
    }
}

impl<'ast> Visit<'ast> for Named {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some(first) = path.segments.first() {
            self.roots.insert(first.ident.to_string());
        }
        self.app |= path
            .segments
            .iter()
            .any(|s| APP_NAMES.iter().any(|n| s.ident == n));
        visit::visit_path(self, path);
    }
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        use_roots(&item.tree, &mut self.roots);
        visit::visit_item_use(self, item);
    }
    fn visit_use_name(&mut self, name: &'ast syn::UseName) {
        self.app |= APP_NAMES.iter().any(|n| name.ident == n);
    }
    fn visit_item_extern_crate(&mut self, item: &'ast syn::ItemExternCrate) {
        self.roots.insert(item.ident.to_string());
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        token_roots(mac.tokens.clone(), self);
        visit::visit_macro(self, mac);
    }
}

fn use_roots(tree: &syn::UseTree, out: &mut BTreeSet<String>) {
    match tree {
        syn::UseTree::Path(p) => {
            out.insert(p.ident.to_string());
        }
        syn::UseTree::Name(n) => {
            out.insert(n.ident.to_string());
        }
        syn::UseTree::Rename(r) => {
            out.insert(r.ident.to_string());
        }
        syn::UseTree::Glob(_) => {}
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| use_roots(t, out)),
    }
}

/// Identifiers followed by `::` in a macro's tokens, at any depth.
fn token_roots(tokens: TokenStream, out: &mut Named) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Ident(ident) => {
                let colons = tokens.get(i + 1..i + 3).is_some_and(|next| {
                    next.iter()
                        .all(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ':'))
                });
                if colons {
                    out.roots.insert(ident.to_string());
                }
                out.app |= APP_NAMES.iter().any(|n| ident == n);
            }
            TokenTree::Group(group) => token_roots(group.stream(), out),
            _ => {}
        }
    }
}
