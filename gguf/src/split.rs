//! Split sets and model directories.
//!
//! llama.cpp's `gguf-split` writes a model as `NAME-00001-of-0000N.gguf` ... with the keys
//! `split.no` (0-based part number), `split.count` and `split.tensors.count` (tensors in all
//! parts) in every part, the model's metadata in the first part, and each tensor in exactly
//! one part with offsets into that part's own data section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::limits::MAX_SPLIT_PARTS;
use crate::{GgufError, GgufFile};

/// The key of a part's 0-based number.
pub const SPLIT_NO: &str = "split.no";
/// The key of the number of parts.
pub const SPLIT_COUNT: &str = "split.count";
/// The key of the number of tensors in all parts.
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// A file name of the form `PREFIX-00002-of-00005.gguf`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitName {
    dir: PathBuf,
    prefix: String,
    /// 1-based part number.
    no: u64,
    count: u64,
    no_width: usize,
    count_width: usize,
}

impl SplitName {
    /// Parses a split part's file name; `None` for any other name.
    pub(crate) fn parse(path: &Path) -> Option<SplitName> {
        let name = path.file_name()?.to_str()?;
        let stem = strip_gguf(name)?;
        let (head, count_digits) = stem.rsplit_once("-of-")?;
        let (prefix, no_digits) = head.rsplit_once('-')?;
        let number = |s: &str| {
            // Nine digits at most: a part number of a billion is no file name anyone wrote.
            (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok())?
        };
        Some(SplitName {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            prefix: prefix.to_string(),
            no: number(no_digits)?,
            count: number(count_digits)?,
            no_width: no_digits.len(),
            count_width: count_digits.len(),
        })
    }

    /// The file name of part `no` (1-based) of the same set.
    fn part_name(&self, no: u64) -> String {
        let (prefix, count) = (&self.prefix, self.count);
        let (nw, cw) = (self.no_width, self.count_width);
        format!("{prefix}-{no:0nw$}-of-{count:0cw$}.gguf")
    }

    /// The path of part `no` (1-based) of the same set.
    pub(crate) fn part(&self, no: u64) -> PathBuf {
        self.dir.join(self.part_name(no))
    }
}

/// The name without a `.gguf` extension of any case; `None` for other names.
fn strip_gguf(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(5)?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".gguf")).then(|| &name[..cut])
}

/// Reads every part of the set that `opened` belongs to, in part order; a file that is no
/// part of a set (no `split.count`, or 1) alone.
pub(crate) fn read_parts(opened: GgufFile) -> Result<Vec<GgufFile>, GgufError> {
    let count = opened.get_u64(SPLIT_COUNT)?.unwrap_or(1);
    if count <= 1 {
        return Ok(vec![opened]);
    }
    let split_err = |path: &Path, message: String| GgufError::Split { path: path.to_path_buf(), message };
    if count > MAX_SPLIT_PARTS {
        return Err(GgufError::TooLarge {
            path: opened.path.clone(),
            what: format!("`{SPLIT_COUNT}`"),
            count,
            limit: MAX_SPLIT_PARTS,
        });
    }
    let Some(name) = SplitName::parse(&opened.path) else {
        return Err(split_err(
            &opened.path,
            format!(
                "the file is part of a set of {count} (`{SPLIT_COUNT}`), but its name does not end in \
                 -0000K-of-{count:05}.gguf, so the other parts cannot be found; rename the parts as \
                 gguf-split wrote them"
            ),
        ));
    };
    if name.no == 0 || name.no > name.count {
        return Err(split_err(
            &opened.path,
            format!("the name says part {} of {}, which no set has", name.no, name.count),
        ));
    }
    if name.count != count {
        return Err(split_err(
            &opened.path,
            format!("the name says the set has {} parts, `{SPLIT_COUNT}` says {count}", name.count),
        ));
    }
    let mut parts = Vec::with_capacity(count as usize);
    let mut opened = Some(opened);
    for no in 1..=count {
        let file = match opened.take() {
            Some(file) if no == name.no => file,
            other => {
                opened = other;
                let path = name.part(no);
                if !path.is_file() {
                    return Err(split_err(&path, format!("part {no} of {count} of this split model is missing")));
                }
                GgufFile::read(&path)?
            }
        };
        parts.push(file);
    }
    check_parts(&parts)?;
    Ok(parts)
}

/// Checks that the parts of a set agree: each names its own place and the same part count,
/// and all together hold `split.tensors.count` tensors. A lone file passes.
pub(crate) fn check_parts(parts: &[GgufFile]) -> Result<(), GgufError> {
    let [first, ..] = parts else {
        return Ok(());
    };
    let n = parts.len() as u64;
    if n == 1 && first.get_u64(SPLIT_COUNT)?.unwrap_or(1) <= 1 {
        return Ok(());
    }
    let split_err = |path: &Path, message: String| GgufError::Split { path: path.to_path_buf(), message };
    let total = first.get_u64(SPLIT_TENSORS_COUNT)?;
    for (i, part) in parts.iter().enumerate() {
        let count = part.get_u64(SPLIT_COUNT)?;
        if count != Some(n) {
            let found = count.map_or("no".to_string(), |c| c.to_string());
            return Err(split_err(&part.path, format!("`{SPLIT_COUNT}` is {found}, but the set has {n} parts")));
        }
        let no = part.get_u64(SPLIT_NO)?;
        if no != Some(i as u64) {
            let found = no.map_or("missing".to_string(), |c| c.to_string());
            return Err(split_err(
                &part.path,
                format!("`{SPLIT_NO}` is {found}, but this is part {} of {n} (split.no counts from 0)", i + 1),
            ));
        }
        let own = part.get_u64(SPLIT_TENSORS_COUNT)?;
        if own.is_some() && own != total {
            return Err(split_err(
                &part.path,
                format!("`{SPLIT_TENSORS_COUNT}` is {own:?} here but {total:?} in the first part"),
            ));
        }
    }
    let found: u64 = parts.iter().map(|p| p.tensors.len() as u64).sum();
    if let Some(total) = total
        && total != found
    {
        return Err(split_err(
            &first.path,
            format!("`{SPLIT_TENSORS_COUNT}` says {total} tensors, but the {n} parts hold {found}"),
        ));
    }
    Ok(())
}

/// The file to open for the one model in `dir`: its only `.gguf` file, or the first part of
/// its only split set. Multimodal projectors (`mmproj*.gguf`) beside a model are passed over.
pub(crate) fn find_model(dir: &Path) -> Result<PathBuf, GgufError> {
    let io = |source| GgufError::Io { path: dir.to_path_buf(), source };
    // Each model by a label for messages: a lone file by its name, a split set by its prefix
    // and part count; with the path to open.
    let mut models: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut sets: BTreeMap<String, (u64, SplitName)> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if strip_gguf(name).is_none() || !path.is_file() {
            continue;
        }
        match SplitName::parse(&path) {
            Some(split) if split.count > 1 => {
                let label = format!("{} ({} parts)", split.part_name(1), split.count);
                // The set opens from its lowest part found, so that a missing first part is
                // reported as missing rather than the set being ignored.
                let slot = sets.entry(label).or_insert((split.no, split.clone()));
                if split.no < slot.0 {
                    *slot = (split.no, split);
                }
            }
            _ => {
                models.insert(name.to_string(), path.clone());
            }
        }
    }
    for (label, (_, split)) in sets {
        models.insert(label, split.part(split.no));
    }
    if models.is_empty() {
        return Err(GgufError::NoGguf { dir: dir.to_path_buf() });
    }
    if models.len() > 1 {
        let not_projector: Vec<&PathBuf> = models
            .iter()
            .filter(|(label, _)| !label.to_ascii_lowercase().starts_with("mmproj"))
            .map(|(_, p)| p)
            .collect();
        if let [only] = not_projector[..] {
            return Ok(only.clone());
        }
        return Err(GgufError::Ambiguous { dir: dir.to_path_buf(), found: models.into_keys().collect() });
    }
    Ok(models.into_values().next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_parse_and_rebuild() {
        let name = SplitName::parse(Path::new("/m/Qwen3-8B-Q4_K_M-00002-of-00003.gguf")).expect("a split name");
        assert_eq!((name.prefix.as_str(), name.no, name.count), ("Qwen3-8B-Q4_K_M", 2, 3));
        assert_eq!(name.part(1), Path::new("/m/Qwen3-8B-Q4_K_M-00001-of-00003.gguf"));
        assert!(SplitName::parse(Path::new("model.gguf")).is_none());
        assert!(SplitName::parse(Path::new("a-1-of-x.gguf")).is_none());
        assert!(SplitName::parse(Path::new("a-0000000000001-of-2.gguf")).is_none());
        assert_eq!(strip_gguf("x.GGUF"), Some("x"));
        assert_eq!(strip_gguf("é.gguf"), Some("é"));
        assert_eq!(strip_gguf("éé"), None);
    }
}
