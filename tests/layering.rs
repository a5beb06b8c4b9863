//! The structure of the sources stays as `ARCHITECTURE.md` draws it: every import between the
//! folders of `src/` runs down the layers, no two files import each other through any chain,
//! and no source file holds more than 500 lines of code before its tests.
//!
//! The checker reads the sources as tokens (comments, strings and `#[cfg(test)]` items left
//! out), collects every path that names an item of the workspace (`use` trees and paths in
//! code starting with `crate`, `super`, `self`, `mlmf`, `mlmf_actors`, a child module or a
//! name the file imported), and resolves each to the file that defines the item: a `pub use`
//! in a `mod.rs` is followed to the file it re-exports, so a facade adds no edge of its own.

#[path = "layering/graph.rs"]
mod graph;
#[path = "layering/imports.rs"]
mod imports;
#[path = "layering/tokens.rs"]
mod tokens;

use std::path::{Path, PathBuf};

use graph::SourceTree;
use tokens::code_lines_before_tests;

/// The layers of the workspace, lowest first. A folder of `src/` (or the `actors` crate) may
/// import only folders of a lower layer; folders of the same layer never import each other.
const LAYERS: &[(&str, &[&str])] = &[
    ("the transport crate: knows nothing of mlmf", &["actors"]),
    ("configuration as plain data", &["config"]),
    ("checkpoints and architectures", &["model"]),
    ("pure logic over a model: plans and placement, text generation", &["plan", "generate"]),
    ("one process runs a plan", &["exec"]),
    ("the actors of a node and the cluster", &["cluster"]),
    ("the HTTP API over a node's parts", &["api"]),
    ("booting a node: the HTTP server plus the actors", &["server"]),
    ("the HTTP API from Rust", &["client"]),
    ("nodes in this process, the seed's deployment API", &["manager"]),
    ("the command line", &["cli"]),
    ("the binary", &["main"]),
];

/// Lines of code (not comments, not blank) a file may hold before its tests.
const MAX_CODE_LINES: usize = 500;

#[test]
fn imports_run_down_the_layers_and_close_no_cycle() {
    let tree = SourceTree::read_workspace();
    let report = tree.check();
    assert!(report.is_empty(), "the structure of the sources breaks ARCHITECTURE.md:\n{}", report.join("\n"));
}

#[test]
fn no_source_file_is_over_the_size_limit() {
    let root = workspace_root();
    let mut over = Vec::new();
    for dir in ["src", "actors/src", "tests", "benches", "examples", "actors/tests"] {
        for path in rust_files(&root.join(dir)) {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = code_lines_before_tests(&text);
            if lines > MAX_CODE_LINES {
                over.push(format!(
                    "{}: {lines} lines of code before its tests",
                    path.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(over.is_empty(), "files over {MAX_CODE_LINES} lines of code:\n{}", over.join("\n"));
}

#[test]
fn a_back_edge_from_cluster_to_api_is_caught() {
    let mut tree = SourceTree::read_workspace();
    let shard = tree.file_mut("src/cluster/shard/mod.rs");
    shard.push_str("\nfn back_edge() { let _ = crate::api::routes::configure; }\n");
    tree.reparse();
    let report = tree.check();
    assert!(
        report.iter().any(|l| l.contains("src/cluster/shard/mod.rs") && l.contains("api")),
        "a back edge cluster -> api was not reported: {report:?}"
    );
}

#[test]
fn a_cycle_between_files_is_caught() {
    let files = [
        ("src/lib.rs", "pub mod model;"),
        ("src/model/mod.rs", "pub mod a; pub mod b; pub use a::A;"),
        ("src/model/a.rs", "use super::b::B; pub struct A(B);"),
        ("src/model/b.rs", "pub struct B; fn f() { let _ = crate::model::A::new; }"),
        ("actors/src/lib.rs", ""),
    ];
    let tree = SourceTree::from_sources(files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect());
    let report = tree.check();
    assert!(
        report.iter().any(|l| l.contains("cycle") && l.contains("src/model/a.rs") && l.contains("src/model/b.rs")),
        "{report:?}"
    );
}

#[test]
fn facades_and_tests_add_no_edges() {
    let files = [
        ("src/lib.rs", "pub mod model; pub mod plan;"),
        ("src/model/mod.rs", "mod a; pub use a::A;\n#[cfg(test)]\nmod tests { use crate::plan::P; }"),
        ("src/model/a.rs", "pub struct A; /* crate::plan::P */ const S: &str = \"crate::plan::P\";"),
        ("src/plan/mod.rs", "pub struct P(crate::model::A);"),
        ("actors/src/lib.rs", ""),
    ];
    let tree = SourceTree::from_sources(files.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())).collect());
    assert!(tree.check().is_empty(), "{:?}", tree.check());
    let edges = tree.edges();
    assert!(edges.contains(&("src/plan/mod.rs".into(), "src/model/a.rs".into())), "{edges:?}");
}

#[test]
fn code_lines_leave_out_comments_blank_lines_and_tests() {
    let text = "//! doc\n\nfn a() {\n    // note\n    1;\n}\n#[cfg(test)]\nmod tests {\n fn b() {}\n}\n";
    assert_eq!(code_lines_before_tests(text), 3);
}

// ---------------------------------------------------------------------------------------------

pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "fixtures") {
                continue;
            }
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}
