//! The import graph between files, the layers of their folders, and its cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::imports::{FileInfo, module_of, parse_file};
use crate::{LAYERS, rust_files, workspace_root};

pub(crate) struct SourceTree {
    sources: BTreeMap<PathBuf, String>,
    files: Vec<FileInfo>,
    by_module: BTreeMap<Vec<String>, usize>,
}

impl SourceTree {
    pub(crate) fn read_workspace() -> Self {
        let root = workspace_root();
        let mut sources = BTreeMap::new();
        for dir in ["src", "actors/src"] {
            for path in rust_files(&root.join(dir)) {
                let text = std::fs::read_to_string(&path).unwrap();
                sources.insert(path.strip_prefix(&root).unwrap().to_path_buf(), text);
            }
        }
        Self::from_sources(sources)
    }

    pub(crate) fn from_sources(sources: BTreeMap<PathBuf, String>) -> Self {
        let mut tree = SourceTree { sources, files: Vec::new(), by_module: BTreeMap::new() };
        tree.reparse();
        tree
    }

    pub(crate) fn file_mut(&mut self, rel: &str) -> &mut String {
        self.sources.get_mut(Path::new(rel)).unwrap_or_else(|| panic!("no {rel}"))
    }

    pub(crate) fn reparse(&mut self) {
        self.files.clear();
        self.by_module.clear();
        for (rel, text) in &self.sources {
            let module = module_of(rel);
            let info = parse_file(rel.to_string_lossy().into_owned(), module.clone(), text);
            self.by_module.insert(module, self.files.len());
            self.files.push(info);
        }
    }

    /// The file defining the item at absolute path `path`, following imports and re-exports.
    pub(crate) fn resolve(&self, path: &[String], hops: usize) -> Option<usize> {
        if hops > 16 {
            return None;
        }
        let k = (1..=path.len()).rev().find(|&k| self.by_module.contains_key(&path[..k]))?;
        let file = self.by_module[&path[..k]];
        if k == path.len() {
            return Some(file);
        }
        match self.files[file].imports.get(&path[k]) {
            Some(target) if target.as_slice() != path => {
                let mut next = target.clone();
                next.extend_from_slice(&path[k + 1..]);
                self.resolve(&next, hops + 1).or(Some(file))
            }
            _ => Some(file),
        }
    }

    pub(crate) fn edges(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (i, f) in self.files.iter().enumerate() {
            for p in &f.paths {
                if let Some(j) = self.resolve(p, 0)
                    && j != i
                {
                    out.insert((f.rel.clone(), self.files[j].rel.clone()));
                }
            }
        }
        out
    }

    /// Every break of the rules, one line each; empty when the structure holds.
    pub(crate) fn check(&self) -> Vec<String> {
        let mut report = Vec::new();
        let edges = self.edges();
        let folder = |rel: &str| self.files.iter().find(|f| f.rel == rel).map(|f| folder_of(&f.module)).unwrap();
        for (from, to) in &edges {
            let (a, b) = (folder(from), folder(to));
            if a == b || a == "root" {
                continue;
            }
            match (layer_of(&a), layer_of(&b)) {
                (Some(la), Some(lb)) if lb < la => {}
                (Some(_), Some(_)) => {
                    report.push(format!("layer: {from} ({a}) imports {to} ({b}), which is not below it"))
                }
                _ => report.push(format!("layer: {from} ({a}) imports {to} ({b}): a folder missing from LAYERS")),
            }
        }
        for scc in strongly_connected(&edges) {
            let inside: Vec<String> = edges
                .iter()
                .filter(|(a, b)| scc.contains(a) && scc.contains(b))
                .map(|(a, b)| format!("{a} -> {b}"))
                .collect();
            report.push(format!("cycle between {} files: {}", scc.len(), inside.join(", ")));
        }
        report
    }
}

/// The layer unit of a module: `actors`, `main`, `root` (lib.rs), or the folder under `src/`.
fn folder_of(module: &[String]) -> String {
    match module[0].as_str() {
        "mlmf_actors" => "actors".into(),
        "mlmf_bin" => "main".into(),
        _ => module.get(1).cloned().unwrap_or_else(|| "root".into()),
    }
}

fn layer_of(folder: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, folders)| folders.contains(&folder))
}

/// The strongly connected components of more than one file (Tarjan's algorithm).
fn strongly_connected(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let nodes: Vec<&String> = nodes.into_iter().collect();
    let id = |n: &String| nodes.iter().position(|m| *m == n).unwrap();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (a, b) in edges {
        adj[id(a)].push(id(b));
    }
    struct T {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    pub(crate) fn visit(v: usize, adj: &[Vec<usize>], t: &mut T) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for &w in &adj[v] {
            match t.index[w] {
                None => {
                    visit(w, adj, t);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            t.out.push(comp);
        }
    }
    let n = nodes.len();
    let mut t =
        T { index: vec![None; n], low: vec![0; n], on: vec![false; n], stack: Vec::new(), next: 0, out: Vec::new() };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(v, &adj, &mut t);
        }
    }
    t.out.into_iter().filter(|c| c.len() > 1).map(|c| c.into_iter().map(|v| nodes[v].clone()).collect()).collect()
}
