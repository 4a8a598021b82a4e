//! Which files to lint: the given files and directories, or every module of every target of
//! the workspace in the current directory (from `cargo metadata`, following `mod` items the way
//! rustc does, so stray `.rs` files such as compile-fail fixtures are not linted).
//!
//! It also says which files form one linked program (a *unit*): a target's modules, its own
//! package's library, and the libraries of the workspace packages it depends on. Duplicate
//! handlers and wire names only matter within one program; given paths are one program.
//!
//! In the workspace, files the [configuration](super::config) excludes are not read, nor are the
//! modules they declare.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::Config;
use crate::program::{CrateFiles, Crates};

/// The files to lint and the linked programs they form.
pub struct Discovered {
    /// Every file, sorted, without duplicates.
    pub files: Vec<PathBuf>,
    /// Each linked program, as indices into `files`.
    pub units: Vec<Vec<usize>>,
    /// Each file's module path (`["shop", "orders"]`), when it was found from a crate root.
    pub modules: Vec<Option<Vec<String>>>,
    /// The workspace's libraries and executables, for the linking rule (empty when paths
    /// were given).
    pub crates: Crates<usize>,
    /// The workspace's lint configuration (empty when paths were given).
    pub config: Config,
    /// How many files the configuration excluded.
    pub excluded: usize,
}

/// Finds the files to lint.
pub fn files(paths: &[PathBuf]) -> Result<Discovered, String> {
    let mut config = Config::default();
    let mut excluded = 0;
    let mut modules = BTreeMap::new();
    let mut crates = Crates::default();
    let units: Vec<BTreeSet<PathBuf>> = if paths.is_empty() {
        let metadata = cargo_metadata()?;
        config = Config::from_metadata(&metadata)?;
        let mut tree = Tree {
            config: &config,
            excluded: BTreeSet::new(),
            modules: BTreeMap::new(),
        };
        let units = workspace_units(&metadata, &mut tree, &mut crates);
        excluded = tree.excluded.len();
        modules = tree.modules;
        units
    } else {
        let mut found = BTreeSet::new();
        for path in paths {
            if path.is_dir() {
                walk(path, &mut found)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            } else if path.is_file() {
                found.insert(path.clone());
            } else {
                return Err(format!("no such file or directory: {}", path.display()));
            }
        }
        vec![found]
    };
    let files: Vec<PathBuf> = units
        .iter()
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |f: &PathBuf| files.binary_search(f).ok();
    let units = units
        .iter()
        .map(|u| u.iter().filter_map(index).collect())
        .collect();
    let modules = files.iter().map(|f| modules.get(f).cloned()).collect();
    let crates = crates.map(|f| index(f));
    Ok(Discovered {
        files,
        units,
        modules,
        crates,
        config,
        excluded,
    })
}

/// A path as diagnostics show it: relative to the current directory when inside it.
pub fn display(path: &Path) -> String {
    let relative = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf));
    relative
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Every `.rs` file under `dir`, skipping `target` directories.
fn walk(dir: &Path, found: &mut BTreeSet<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                walk(&path, found)?;
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.insert(path);
        }
    }
    Ok(())
}

/// `cargo metadata` for the workspace of the current directory.
fn cargo_metadata() -> Result<serde_json::Value, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(&cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run `{cargo} metadata`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo metadata` failed (is this a Cargo workspace?):\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("`cargo metadata` printed something that is not JSON: {e}"))
}

/// Every target of every workspace member, as the set of files of the program it links.
fn workspace_units(
    metadata: &serde_json::Value,
    tree: &mut Tree,
    crates: &mut Crates<PathBuf>,
) -> Vec<BTreeSet<PathBuf>> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();

    // Each package's library crate name (a `[lib] name` may differ from the package's).
    let lib_names: BTreeMap<String, String> = packages
        .iter()
        .filter_map(|package| {
            let target = package["targets"].as_array()?.iter().find(|t| is_lib(t))?;
            Some((
                package["name"].as_str()?.to_string(),
                crate_name(target["name"].as_str()?),
            ))
        })
        .collect();
    // Each package's library files, and the workspace packages it depends on: by package
    // name (to follow) and by the name its code uses (a `package = …` rename changes it).
    let mut libraries: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut depends: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut code_names: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default().to_string();
        for target in package["targets"].as_array().into_iter().flatten() {
            if is_lib(target)
                && let Some(src) = target["src_path"].as_str()
            {
                let mut files = BTreeSet::new();
                let root = vec![crate_name(target["name"].as_str().unwrap_or_default())];
                tree.module_tree(Path::new(src), true, root, &mut files);
                libraries.insert(name.clone(), files);
            }
        }
        let (mut normal, mut dev) = (Vec::new(), Vec::new());
        let (mut normal_code, mut dev_code) = (Vec::new(), Vec::new());
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            if dep["path"].is_null() {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap_or_default().to_string();
            let code = dep["rename"].as_str().map_or_else(
                || {
                    lib_names
                        .get(&dep_name)
                        .cloned()
                        .unwrap_or_else(|| crate_name(&dep_name))
                },
                crate_name,
            );
            match dep["kind"].as_str() {
                Some("dev") => {
                    dev.push(dep_name);
                    dev_code.push(code);
                }
                Some("build") => {}
                _ => {
                    normal.push(dep_name);
                    normal_code.push(code);
                }
            }
        }
        code_names.insert(name.clone(), (normal_code.clone(), dev_code));
        if let Some(lib) = lib_names.get(&name) {
            crates.libraries.push(CrateFiles {
                name: lib.clone(),
                files: libraries
                    .get(&name)
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect(),
                depends: normal_code,
            });
        }
        depends.insert(name, (normal, dev));
    }
    let linked = |roots: Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = roots;
        let mut files = BTreeSet::new();
        while let Some(name) = stack.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(lib) = libraries.get(&name) {
                files.extend(lib.iter().cloned());
            }
            if let Some((normal, _)) = depends.get(&name) {
                stack.extend(normal.iter().cloned());
            }
        }
        files
    };

    let mut units = Vec::new();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default().to_string();
        let (normal, dev) = depends.get(&name).cloned().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let kinds = kinds(target);
            let Some(src) = target["src_path"].as_str() else {
                continue;
            };
            if kinds.iter().any(|k| k == "custom-build") {
                continue;
            }
            let target_name = target["name"].as_str().unwrap_or_default();
            let mut files = BTreeSet::new();
            let root = vec![crate_name(target_name)];
            tree.module_tree(Path::new(src), true, root, &mut files);
            let mut roots = normal.clone();
            if !is_lib(target) {
                // Tests, examples, benches and binaries link their own library and dev-dependencies.
                let (normal_code, dev_code) = code_names.get(&name).cloned().unwrap_or_default();
                let mut code = normal_code;
                code.extend(lib_names.get(&name).cloned());
                roots.push(name.clone());
                if !kinds.iter().any(|k| k == "bin") {
                    roots.extend(dev.iter().cloned());
                    code.extend(dev_code);
                }
                let kind = kinds.first().map_or("bin", String::as_str);
                crates.executables.push(CrateFiles {
                    name: format!("{kind} `{target_name}` of `{name}`"),
                    files: files.iter().cloned().collect(),
                    depends: code,
                });
            }
            files.extend(linked(roots));
            units.push(files);
        }
    }
    units
}

fn is_lib(target: &serde_json::Value) -> bool {
    kinds(target)
        .iter()
        .any(|k| k == "lib" || k == "rlib" || k == "proc-macro")
}

/// A crate's name as code writes it: `my-handlers` → `my_handlers`.
fn crate_name(name: &str) -> String {
    name.replace('-', "_")
}

fn kinds(target: &serde_json::Value) -> Vec<String> {
    target["kind"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().map(String::from))
        .collect()
}

/// Follows `mod` items from crate roots, leaving out what the configuration excludes.
struct Tree<'a> {
    config: &'a Config,
    /// The files left out.
    excluded: BTreeSet<PathBuf>,
    /// Each file's module path, as first reached from a crate root.
    modules: BTreeMap<PathBuf, Vec<String>>,
}

impl Tree<'_> {
    /// Adds `file` and every file its `mod` items load. `owns_dir` says whether its submodules
    /// live next to it (a crate root or `mod.rs`) or in a directory named after it.
    fn module_tree(
        &mut self,
        file: &Path,
        owns_dir: bool,
        module: Vec<String>,
        found: &mut BTreeSet<PathBuf>,
    ) {
        let file = &lexical(file);
        if self.config.excludes(file) {
            self.excluded.insert(file.to_path_buf());
            return;
        }
        if !found.insert(file.to_path_buf()) {
            return;
        }
        self.modules
            .entry(file.to_path_buf())
            .or_insert_with(|| module.clone());
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        // A file that does not parse is still linted (and reported); its modules cannot be found.
        let Ok(ast) = syn::parse_file(&text) else {
            return;
        };
        let parent = file.parent().unwrap_or(Path::new("."));
        let dir = if owns_dir {
            parent.to_path_buf()
        } else {
            parent.join(file.file_stem().unwrap_or_default())
        };
        self.submodules(&ast.items, &dir, &module, found);
    }

    fn submodules(
        &mut self,
        items: &[syn::Item],
        dir: &Path,
        parent: &[String],
        found: &mut BTreeSet<PathBuf>,
    ) {
        for item in items {
            let syn::Item::Mod(m) = item else { continue };
            let name = m.ident.to_string();
            let module = [parent, std::slice::from_ref(&name)].concat();
            let path_attr = m.attrs.iter().find_map(|a| match &a.meta {
                syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            });
            match (&m.content, path_attr) {
                (Some((_, items)), _) => {
                    self.submodules(items, &dir.join(&name), &module, found);
                }
                (None, Some(path)) => self.module_tree(&dir.join(path), true, module, found),
                (None, None) => {
                    let flat = dir.join(format!("{name}.rs"));
                    let nested = dir.join(&name).join("mod.rs");
                    if flat.is_file() {
                        self.module_tree(&flat, false, module, found);
                    } else if nested.is_file() {
                        self.module_tree(&nested, true, module, found);
                    }
                }
            }
        }
    }
}

/// `file` with `.` and `dir/..` removed, without touching the file system (a target's
/// `path = "../../src/x.rs"` is shown as `src/x.rs`, and one file has one spelling).
fn lexical(file: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in file.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
