//! The source tree keeps the shape ARCHITECTURE.md describes: no source
//! file imports, directly or through others, a file that imports it back
//! (each module uses only modules below it in the data flow), and no
//! source file passes 600 lines (tests and the binary aside).
//!
//! Imports are read with `syn`: every `use` tree and every path that
//! starts with `crate`, `super` or `self`, outside `#[cfg(test)]` items,
//! resolved to the file that defines the module it names.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

const MAX_LINES: usize = 600;

/// A module path (`["store", "disk"]`) and the file that holds it.
type Modules = BTreeMap<Vec<String>, PathBuf>;

fn modules() -> Modules {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Modules::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path != src.join("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            found.insert(parts, path);
        }
    }
    found
}

/// The modules a file names, as absolute module paths (not yet resolved).
struct Imports<'a> {
    /// The module this file is.
    this: &'a [String],
    /// Every module path the file names.
    paths: Vec<Vec<String>>,
}

impl Imports<'_> {
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let (head, rest) = segments.split_first()?;
        let mut base: Vec<String> = match head.as_str() {
            "crate" => Vec::new(),
            "self" => self.this.to_vec(),
            "super" => self.this[..self.this.len().checked_sub(1)?].to_vec(),
            _ => return None,
        };
        let mut rest = rest;
        while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
            base.pop();
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.push(prefix, Some(n.ident.to_string())),
            syn::UseTree::Rename(r) => self.push(prefix, Some(r.ident.to_string())),
            syn::UseTree::Glob(_) => self.push(prefix, None),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.tree(prefix, item);
                }
            }
        }
    }

    fn push(&mut self, prefix: &[String], last: Option<String>) {
        let mut segments = prefix.to_vec();
        segments.extend(last.filter(|l| l != "self"));
        if let Some(path) = self.absolute(&segments) {
            self.paths.push(path);
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

impl<'ast> Visit<'ast> for Imports<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    /// `pub(super)` names who may see an item, not what it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(path) = self.absolute(&segments) {
            self.paths.push(path);
        }
        syn::visit::visit_path(self, path);
    }
}

/// The file of the longest module prefix of `path`.
fn resolve<'m>(modules: &'m Modules, path: &[String]) -> Option<&'m Vec<String>> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// Which files each file imports.
fn graph(modules: &Modules) -> BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> {
    modules
        .iter()
        .map(|(module, file)| {
            let text = std::fs::read_to_string(file).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let mut imports = Imports {
                this: module,
                paths: Vec::new(),
            };
            imports.visit_file(&ast);
            let targets = imports
                .paths
                .iter()
                .filter_map(|p| resolve(modules, p))
                .filter(|t| *t != module)
                .collect();
            (module, targets)
        })
        .collect()
}

fn shown(modules: &Modules, module: &[String]) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = &modules[module];
    file.strip_prefix(&src)
        .unwrap_or(file)
        .display()
        .to_string()
}

#[test]
fn no_source_file_imports_one_that_imports_it_back() {
    let modules = modules();
    let graph = graph(&modules);
    let mut cycles = Vec::new();
    // A cycle through `from` exists when `from` is reachable from one of
    // its own imports; report the shortest such loop.
    for from in graph.keys() {
        let mut previous: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
        let mut queue: std::collections::VecDeque<&Vec<String>> =
            graph[from].iter().copied().collect();
        for next in &queue {
            previous.insert(next, from);
        }
        while let Some(at) = queue.pop_front() {
            if at == *from {
                let mut path = vec![shown(&modules, at)];
                let mut step = previous[at];
                while step != *from {
                    path.push(shown(&modules, step));
                    step = previous[step];
                }
                path.push(shown(&modules, from));
                path.reverse();
                cycles.push(path.join(" -> "));
                break;
            }
            for next in &graph[at] {
                if !previous.contains_key(next) {
                    previous.insert(next, at);
                    queue.push_back(next);
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "import cycles (ARCHITECTURE.md: modules import only downward):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_source_file_passes_600_lines() {
    let long: Vec<String> = modules()
        .values()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}
