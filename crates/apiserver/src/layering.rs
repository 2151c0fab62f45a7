//! A test of how the crate's top-level modules depend on each other: it fails on any
//! import cycle between them, so the layers stay layers (the HTTP layer over the generic
//! store over the strategies over the leaf modules). The crate root
//! (`ApiServer`, `Config`) is left out: every module reaches it, and handing modules
//! narrow handles instead is issue [house] §5.
//!
//! Edges are read from the sources: every `crate::<module>` path outside comments and
//! test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph(src: &Path) -> Graph {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|n| n.to_str()).expect("name").to_owned();
        if name != "lib" && (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
            modules.insert(name);
        }
    }
    let mut edges: Graph = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for module in &modules {
        let mut files = Vec::new();
        collect(&src.join(module), &mut files);
        collect(&src.join(format!("{module}.rs")), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for used in referenced(line).filter(|u| modules.contains(*u) && *u != module) {
                    edges.get_mut(module).expect("module").insert(used.to_owned());
                }
            }
        }
    }
    edges
}

fn collect(path: &Path, files: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("dir") {
            collect(&entry.expect("entry").path(), files);
        }
    } else if path.is_file() && path.extension().is_some_and(|e| e == "rs") {
        files.push(path.to_owned());
    }
}

/// The first path segment after each `crate::`, including each of a `crate::{a, b}`.
fn referenced(line: &str) -> impl Iterator<Item = &str> {
    line.split("crate::").skip(1).flat_map(|rest| {
        let group = rest.strip_prefix('{').map(|g| g.split('}').next().unwrap_or(""));
        let parts: Vec<&str> = match group {
            Some(group) => group.split(',').collect(),
            None => vec![rest],
        };
        parts.into_iter().map(|p| {
            let p = p.trim();
            let end = p.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(p.len());
            &p[..end]
        })
    })
}

/// Strongly connected sets of more than one module (Tarjan's algorithm).
fn cycles(edges: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        for w in &s.edges[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                set.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                s.found.push(set);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_import_cycle_between_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(edges["registry"].contains("status"), "the reader finds edges: {edges:?}");
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles between modules: {found:?}; the edges: {edges:#?}");
}

#[test]
fn a_cycle_is_found_and_a_chain_is_not() {
    let graph = |pairs: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (a, b) in pairs {
            g.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            g.entry((*b).to_owned()).or_default();
        }
        g
    };
    assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    let found = cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]));
    assert_eq!(found, [["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect()]);
    let line = "use crate::{ApiServer, list, patch::Kind}; crate::table::render(x)";
    assert_eq!(referenced(line).collect::<Vec<_>>(), ["ApiServer", "list", "patch", "table"]);
}
