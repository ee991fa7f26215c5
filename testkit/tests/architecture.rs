//! The tree's one import rule (docs/architecture.md): no two modules of a crate import each
//! other. Read from the sources, so a change that adds a cycle fails here, naming both
//! files, instead of waiting for a reader to notice.
//!
//! A module is a file (`a.rs` or `a/mod.rs`). An import is any `crate::` or `super::` path
//! in code (use lines and inline paths alike), resolved to the deepest module it names.
//! Parents and children are exempt: a child using its parent's types is how a module is
//! split into files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &["proto", "shared", "coordinator", "worker", "testkit"];

/// A module path within its crate: `[]` for the crate root, `["scheduler", "ingest"]`.
type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "lib.rs" | "main.rs" | "mod.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path after `crate::` (ups = `usize::MAX`) or after a chain of `super::` (ups = its
/// length), with one level of `{a, b::c}` groups expanded.
fn paths(line: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for anchor in ["crate::", "super::"] {
        let mut rest = line;
        while let Some(at) = rest.find(anchor) {
            let mut ups = usize::from(anchor == "super::");
            let mut tail = &rest[at + anchor.len()..];
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            let base = if anchor == "crate::" { usize::MAX } else { ups };
            out.extend(expand(tail).into_iter().map(|path| (base, path)));
            rest = tail;
        }
    }
    out
}

fn expand(tail: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut prefix = Vec::new();
    let mut s = tail;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let body = group.split('}').next().unwrap_or("");
            return body
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    let mut p = prefix.clone();
                    p.extend(item.split("::").map(|seg| ident(seg.trim())).filter(|seg| !seg.is_empty()));
                    p
                })
                .collect();
        }
        let name = ident(s);
        if name.is_empty() {
            return vec![prefix];
        }
        s = &s[name.len()..];
        prefix.push(name);
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => return vec![prefix],
        }
    }
}

/// The deepest known module a path names, if any.
fn resolve(known: &BTreeSet<Module>, path: &[String]) -> Option<Module> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| known.contains(m))
}

fn is_ancestor(a: &[String], b: &[String]) -> bool {
    a.len() <= b.len() && b[..a.len()] == *a
}

#[test]
fn no_two_modules_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut cycles = Vec::new();
    let mut edges_seen = 0;
    for krate in CRATES {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeMap<Module, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
        let known: BTreeSet<Module> = modules.keys().cloned().collect();
        let mut edges: BTreeSet<(Module, Module)> = BTreeSet::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (ups, path) in paths(code) {
                    let full: Vec<String> = if ups == usize::MAX {
                        path
                    } else {
                        // `super` of a file module is its parent; of a `mod.rs`, the same.
                        let base = &module[..module.len().saturating_sub(ups)];
                        base.iter().cloned().chain(path).collect()
                    };
                    let Some(target) = resolve(&known, &full) else { continue };
                    if !is_ancestor(&target, module) && !is_ancestor(module, &target) {
                        edges.insert((module.clone(), target));
                    }
                }
            }
        }
        edges_seen += edges.len();
        for (a, b) in &edges {
            if a < b && edges.contains(&(b.clone(), a.clone())) {
                let shown = |m: &Module| modules[m].strip_prefix(&root).unwrap_or(&modules[m]).display().to_string();
                cycles.push(format!("{} <-> {}", shown(a), shown(b)));
            }
        }
    }
    assert!(edges_seen > 50, "only {edges_seen} imports found: the reader is broken, not the tree clean");
    assert!(cycles.is_empty(), "modules that import each other:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_groups_and_supers() {
    assert_eq!(
        paths("use crate::{error::Result, ids::JobId};"),
        vec![(usize::MAX, vec!["error".into(), "Result".into()]), (usize::MAX, vec!["ids".into(), "JobId".into()])]
    );
    assert_eq!(paths("use super::super::store::Tree;"), vec![(2, vec!["store".into(), "Tree".into()])]);
    assert_eq!(paths("let x = crate::metrics::Metrics::new();")[0].1[0], "metrics");
}
