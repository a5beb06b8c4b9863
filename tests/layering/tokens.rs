//! Rust source as tokens: identifiers and the punctuation that paths and items are made of;
//! comments, strings, chars and lifetimes dropped, `#[cfg(test)]` items taken out.

use std::collections::BTreeSet;

/// A token of Rust source: an identifier or keyword, or one punctuation character (`::` is one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Punct(&'static str),
    Other(char),
}

/// The tokens of `text` with their line numbers; comments, strings, chars and lifetimes dropped.
pub(crate) fn lex(text: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (hashes, body) = raw_string_start(&chars, i).unwrap();
            out.push((Tok::Other('"'), line));
            i = body;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(chars[i] == '\n');
                i += 1;
            }
        } else if c == '"' || (c == 'b' && at(i + 1) == '"') {
            out.push((Tok::Other('"'), line));
            i += if c == 'b' { 2 } else { 1 };
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            out.push((Tok::Other('\''), line));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // `r#ident` is the identifier itself.
            out.push((Tok::Ident(word.trim_start_matches("r#").to_string()), line));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.') {
                if chars[i] == '.' && at(i + 1) == '.' {
                    break;
                }
                i += 1;
            }
            out.push((Tok::Other('0'), line));
        } else if c == ':' && at(i + 1) == ':' {
            out.push((Tok::Punct("::"), line));
            i += 2;
        } else {
            let p = match c {
                '{' => Tok::Punct("{"),
                '}' => Tok::Punct("}"),
                '(' => Tok::Punct("("),
                ')' => Tok::Punct(")"),
                '[' => Tok::Punct("["),
                ']' => Tok::Punct("]"),
                ';' => Tok::Punct(";"),
                ',' => Tok::Punct(","),
                '#' => Tok::Punct("#"),
                '*' => Tok::Punct("*"),
                '!' => Tok::Punct("!"),
                '$' => Tok::Punct("$"),
                other => Tok::Other(other),
            };
            out.push((p, line));
            i += 1;
        }
    }
    out
}

/// Where a raw string starting at `i` (`r"`, `r#"`, `br#"`) has its body: (hashes, body start).
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

pub(crate) fn is(t: Option<&(Tok, usize)>, p: &str) -> bool {
    matches!(t, Some((Tok::Punct(q), _)) if *q == p)
}

pub(crate) fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// The tokens with every `#[cfg(test)]` item taken out.
pub(crate) fn without_tests(toks: &[(Tok, usize)]) -> Vec<(Tok, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Some(end) = cfg_test_attr_end(toks, i) {
            i = item_end(toks, skip_attrs(toks, end));
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

/// If `#[cfg(test)]` starts at `i`, the index after it.
pub(crate) fn cfg_test_attr_end(toks: &[(Tok, usize)], i: usize) -> Option<usize> {
    let want = ["#", "[", "cfg", "(", "test", ")", "]"];
    for (k, w) in want.iter().enumerate() {
        let ok = match toks.get(i + k) {
            Some((Tok::Punct(p), _)) => p == w,
            Some((Tok::Ident(s), _)) => s == w,
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    Some(i + want.len())
}

fn skip_attrs(toks: &[(Tok, usize)], mut i: usize) -> usize {
    while is(toks.get(i), "#") && is(toks.get(i + 1), "[") {
        i = close_of(toks, i + 1) + 1;
    }
    i
}

/// The index of the bracket closing the one opened at `open`.
fn close_of(toks: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0i32;
    for (k, (t, _)) in toks.iter().enumerate().skip(open) {
        if let Tok::Punct(p) = t {
            match *p {
                "{" | "(" | "[" => depth += 1,
                "}" | ")" | "]" => {
                    depth -= 1;
                    if depth == 0 {
                        return k;
                    }
                }
                _ => {}
            }
        }
    }
    toks.len()
}

/// The index after the item starting at `i`: its `;` or its first top-level `{…}` block.
fn item_end(toks: &[(Tok, usize)], mut i: usize) -> usize {
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct(";") => return i + 1,
            Tok::Punct("{") => return close_of(toks, i) + 1,
            Tok::Punct("(") | Tok::Punct("[") => i = close_of(toks, i) + 1,
            _ => i += 1,
        }
    }
    i
}

/// Lines holding code before the file's first `#[cfg(test)]` item.
pub(crate) fn code_lines_before_tests(text: &str) -> usize {
    let toks = lex(text);
    let end = (0..toks.len()).find(|&i| cfg_test_attr_end(&toks, i).is_some()).unwrap_or(toks.len());
    toks[..end].iter().map(|(_, l)| *l).collect::<BTreeSet<_>>().len()
}
