//! What one file imports: its `mod` children, its `use` trees, and every path in its code that
//! names an item of the workspace, made absolute.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::tokens::{Tok, ident, is, lex, without_tests};

/// One source file: its module path, the modules it declares, what it imports, the paths it names.
#[derive(Debug, Default)]
pub(crate) struct FileInfo {
    pub(crate) rel: String,
    pub(crate) module: Vec<String>,
    pub(crate) imports: BTreeMap<String, Vec<String>>,
    pub(crate) paths: Vec<Vec<String>>,
}

pub(crate) fn module_of(rel: &Path) -> Vec<String> {
    let s = rel.to_string_lossy().replace('\\', "/");
    let (krate, rest) = if let Some(rest) = s.strip_prefix("actors/src/") {
        ("mlmf_actors", rest)
    } else if s == "src/main.rs" {
        return vec!["mlmf_bin".into()];
    } else {
        ("mlmf", s.strip_prefix("src/").unwrap_or(&s))
    };
    let mut module = vec![krate.to_string()];
    let rest = rest.trim_end_matches(".rs");
    for seg in rest.split('/') {
        if seg != "lib" && seg != "mod" {
            module.push(seg.to_string());
        }
    }
    module
}

/// Parses one file: its `mod x;` children, its imports, and every workspace path it names.
pub(crate) fn parse_file(rel: String, module: Vec<String>, text: &str) -> FileInfo {
    let toks = without_tests(&lex(text));
    let krate = module[0].clone();
    // Children declared with `mod x;` (files) or `mod x {…}` (inline): both are modules here.
    let mut children = BTreeSet::new();
    for w in toks.windows(2) {
        if ident(Some(&w[0])) == Some("mod")
            && let Some(name) = ident(Some(&w[1]))
        {
            children.insert(name.to_string());
        }
    }
    let mut info = FileInfo { rel, module: module.clone(), ..Default::default() };
    // Inline modules change what `self` and `super` mean inside them.
    let mut scope: Vec<(Vec<String>, i32)> = vec![(module.clone(), 0)];
    let mut depth = 0i32;
    let mut raw_uses: Vec<(Vec<String>, Vec<String>, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct("{") => depth += 1,
            Tok::Punct("}") => {
                depth -= 1;
                if scope.len() > 1 && scope.last().unwrap().1 == depth {
                    scope.pop();
                }
            }
            Tok::Ident(w) if w == "mod" && is(toks.get(i + 2), "{") => {
                let mut inner = scope.last().unwrap().0.clone();
                inner.push(ident(toks.get(i + 1)).unwrap_or("_").to_string());
                scope.push((inner, depth));
            }
            Tok::Ident(w) if w == "use" && !is(toks.get(i.wrapping_sub(1)), "::") => {
                let here = scope.last().unwrap().0.clone();
                let mut j = i + 1;
                let mut found = Vec::new();
                parse_use_tree(&toks, &mut j, Vec::new(), &mut found);
                for (path, bound) in found {
                    raw_uses.push((here.clone(), path, bound));
                }
                i = j;
                continue;
            }
            Tok::Ident(first) if !is(toks.get(i.wrapping_sub(1)), "::") && is(toks.get(i + 1), "::") => {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while is(toks.get(j), "::") {
                    match ident(toks.get(j + 1)) {
                        Some(s) => path.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                info.paths.push(path);
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    // Absolute paths: `crate`, `super`, `self`, the crates of the workspace, and children.
    let absolute = |here: &[String], path: &[String]| -> Option<Vec<String>> {
        let first = path.first()?;
        let mut out: Vec<String> = match first.as_str() {
            "crate" => vec![krate.clone()],
            "mlmf" | "mlmf_actors" => vec![first.clone()],
            "self" => here.to_vec(),
            "super" => {
                let mut p = here.to_vec();
                let mut k = 0;
                while path.get(k).map(String::as_str) == Some("super") {
                    p.pop();
                    k += 1;
                }
                p.extend_from_slice(&path[k..]);
                return Some(p);
            }
            name if here == module.as_slice() && children.contains(name) => {
                let mut p = here.to_vec();
                p.push(name.to_string());
                p.extend_from_slice(&path[1..]);
                return Some(p);
            }
            _ => return None,
        };
        out.extend_from_slice(&path[1..]);
        Some(out)
    };
    for (here, path, bound) in &raw_uses {
        let Some(abs) = absolute(here, path) else { continue };
        if here == &module
            && let Some(name) = bound
        {
            info.imports.insert(name.clone(), abs.clone());
        }
        info.paths.push(abs);
    }
    let mut resolved = Vec::new();
    for path in std::mem::take(&mut info.paths) {
        if matches!(path[0].as_str(), "mlmf" | "mlmf_actors") && path.len() > 1 && path != module {
            resolved.push(path);
        } else if let Some(abs) = absolute(&module, &path) {
            resolved.push(abs);
        } else if let Some(target) = info.imports.get(&path[0]) {
            let mut p = target.clone();
            p.extend_from_slice(&path[1..]);
            resolved.push(p);
        }
    }
    info.paths = resolved;
    info
}

/// Expands the use tree at `*j` into (path, the name it binds) pairs, and moves past its `;`.
fn parse_use_tree(
    toks: &[(Tok, usize)],
    j: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix;
    loop {
        match toks.get(*j) {
            Some((Tok::Ident(s), _)) if s == "as" => {
                let alias = ident(toks.get(*j + 1)).map(str::to_string);
                *j += 2;
                out.push((path, alias.filter(|a| a != "_")));
                return finish_use(toks, j);
            }
            Some((Tok::Ident(s), _)) => {
                path.push(s.clone());
                *j += 1;
            }
            Some((Tok::Punct("::"), _)) => *j += 1,
            Some((Tok::Punct("*"), _)) => {
                *j += 1;
                out.push((path, None));
                return finish_use(toks, j);
            }
            Some((Tok::Punct("{"), _)) => {
                *j += 1;
                loop {
                    if is(toks.get(*j), "}") {
                        *j += 1;
                        break;
                    }
                    parse_use_tree(toks, j, path.clone(), out);
                    if is(toks.get(*j), ",") {
                        *j += 1;
                    }
                    if *j >= toks.len() {
                        break;
                    }
                }
                return finish_use(toks, j);
            }
            _ => {
                let bound = path.last().cloned().filter(|n| n != "self");
                if path.last().map(String::as_str) == Some("self") {
                    path.pop();
                    let name = path.last().cloned();
                    out.push((path, name));
                } else {
                    out.push((path, bound));
                }
                return finish_use(toks, j);
            }
        }
    }
}

fn finish_use(toks: &[(Tok, usize)], j: &mut usize) {
    if is(toks.get(*j), ";") {
        *j += 1;
    }
}
