//! Tests of reading one file: round trips through [`GgufWriter`] and each hostile header.

use mlmf_quant::QuantType;

use crate::limits::{MAX_ARRAY_LEN, MAX_STRING_BYTES};
use crate::testing::{Raw, parse};
use crate::{GgufError, GgufWriter, MetaValue, ValueType};

/// Every scalar type, every array element type.
fn all_types() -> Vec<(&'static str, MetaValue)> {
    vec![
        ("t.u8", MetaValue::U8(200)),
        ("t.i8", MetaValue::I8(-100)),
        ("t.u16", MetaValue::U16(60_000)),
        ("t.i16", MetaValue::I16(-30_000)),
        ("t.u32", MetaValue::U32(4_000_000_000)),
        ("t.i32", MetaValue::I32(-2_000_000_000)),
        ("t.u64", MetaValue::U64(u64::MAX)),
        ("t.i64", MetaValue::I64(i64::MIN)),
        ("t.f32", MetaValue::F32(1.5e-7)),
        ("t.f64", MetaValue::F64(-2.25e300)),
        ("t.bool", MetaValue::Bool(true)),
        ("t.false", MetaValue::Bool(false)),
        ("t.string", MetaValue::String("{% for m in messages %}ü{% endfor %}".into())),
        ("t.empty", MetaValue::String(String::new())),
        ("t.strings", MetaValue::StringArray(vec!["<s>".into(), "".into(), "Ġthe".into()])),
        ("t.ints", MetaValue::IntArray(vec![-1, 0, 7])),
        ("t.wide_ints", MetaValue::IntArray(vec![i64::MIN, i64::MAX])),
        ("t.floats", MetaValue::FloatArray(vec![0.5, -3.0, f64::INFINITY])),
        ("t.doubles", MetaValue::FloatArray(vec![0.1, 1e300])),
        ("t.bools", MetaValue::BoolArray(vec![true, false, true])),
        ("t.nested", MetaValue::NestedArray(3)),
        ("t.no_strings", MetaValue::StringArray(vec![])),
    ]
}

#[test]
fn every_metadata_type_round_trips() {
    for version in [2, 3] {
        let mut w = GgufWriter::new(version);
        for (key, value) in all_types() {
            w = w.metadata(key, value);
        }
        let widths = [
            (ValueType::U8, vec![0, 255]),
            (ValueType::I8, vec![-128, 127]),
            (ValueType::U16, vec![0, 65_535]),
            (ValueType::I16, vec![-32_768, 32_767]),
            (ValueType::U32, vec![0, u32::MAX as i64]),
            (ValueType::I32, vec![i32::MIN as i64, 5]),
            (ValueType::U64, vec![0, i64::MAX]),
            (ValueType::I64, vec![i64::MIN, -1]),
        ];
        for (ty, values) in &widths {
            w = w.metadata_array(&format!("w.{ty:?}"), *ty, MetaValue::IntArray(values.clone()));
        }
        w = w.metadata_array("w.f32", ValueType::F32, MetaValue::FloatArray(vec![0.25, -8.0]));
        w = w.metadata_array("w.f64", ValueType::F64, MetaValue::FloatArray(vec![0.25, 0.1]));
        let file = parse(&w.to_bytes()).expect("a valid file");
        assert_eq!(file.version, version);
        for (key, value) in all_types() {
            assert_eq!(file.metadata[key], value, "{key}");
        }
        for (ty, values) in widths {
            assert_eq!(file.metadata[&format!("w.{ty:?}")], MetaValue::IntArray(values), "{ty:?}");
        }
        assert_eq!(file.metadata["w.f32"], MetaValue::FloatArray(vec![0.25, -8.0]));
        assert_eq!(file.metadata["w.f64"], MetaValue::FloatArray(vec![0.25, 0.1]));
        assert_eq!(file.metadata.len(), all_types().len() + 10);
    }
}

#[test]
fn tensors_are_placed_and_aligned() {
    let q4 = vec![7u8; 18 * 4];
    let bytes = GgufWriter::new(3)
        .alignment(64)
        .tensor("a", QuantType::F32, &[3], vec![1; 12])
        .tensor("b", QuantType::Q4_0, &[64, 2], q4.clone())
        .tensor("c", QuantType::Q6K, &[256], vec![2; 210])
        .to_bytes();
    let file = parse(&bytes).expect("a valid file");
    assert_eq!(file.alignment, 64);
    assert_eq!(file.data_offset % 64, 0);
    let b = file.tensor("b").expect("tensor b");
    assert_eq!((b.dims.clone(), b.ty, b.bytes, b.elements()), (vec![64, 2], QuantType::Q4_0, 72, 128));
    assert_eq!(b.shape(), vec![2, 64]);
    assert_eq!(&bytes[b.range().start as usize..b.range().end as usize], &q4[..]);
    for t in &file.tensors {
        assert_eq!(t.offset % 64, 0, "{}", t.name);
        assert_eq!(t.file, 0);
    }
    assert_eq!(file.len, bytes.len() as u64);
}

#[test]
fn an_empty_file_and_one_without_tensors_parse() {
    let file = parse(&GgufWriter::new(3).to_bytes()).expect("an empty model");
    assert!(file.metadata.is_empty() && file.tensors.is_empty());
    assert_eq!(file.alignment, 32);
}

/// A valid file whose bytes tests then break.
fn valid() -> Vec<u8> {
    GgufWriter::new(3)
        .metadata("general.architecture", MetaValue::String("llama".into()))
        .metadata("tokenizer.ggml.tokens", MetaValue::StringArray(vec!["a".into(), "b".into()]))
        .tensor("w", QuantType::Q8_0, &[32, 2], vec![0; 68])
        .tensor("n", QuantType::F32, &[4], vec![0; 16])
        .to_bytes()
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let mut bytes = valid();
    bytes[..4].copy_from_slice(b"GGML");
    let err = parse(&bytes).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { found, .. } if &found == b"GGML"), "{err}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    for (version, says) in [(1, "v1 is no longer supported"), (4, "version 4"), (0x0300_0000, "big-endian")] {
        let err = parse(&GgufWriter::new(version).to_bytes()).unwrap_err();
        assert!(matches!(err, GgufError::UnsupportedVersion { version: v, .. } if v == version));
        assert!(err.to_string().contains(says), "{err}");
    }
}

#[test]
fn every_cut_is_an_error_and_names_what() {
    let bytes = valid();
    for cut in 0..bytes.len() {
        let Err(err) = parse(&bytes[..cut]) else {
            // Cutting only the padding after the last tensor leaves a whole file.
            assert!(cut >= bytes.len() - 16, "a file cut at {cut} parsed");
            continue;
        };
        assert!(
            matches!(err, GgufError::Truncated { .. } | GgufError::TooLarge { .. } | GgufError::OutOfBounds { .. }),
            "cut at {cut}: {err}"
        );
        assert!(err.to_string().starts_with("test.gguf: "), "{err}");
    }
    let err = parse(&bytes[..bytes.len() - 40]).unwrap_err();
    assert!(matches!(&err, GgufError::OutOfBounds { tensor, .. } if tensor == "n"), "{err}");
}

#[test]
fn absurd_counts_are_refused_before_allocating() {
    let too_large = |bytes: &[u8], what: &str| {
        let err = parse(bytes).unwrap_err();
        assert!(matches!(&err, GgufError::TooLarge { what: w, .. } if w.contains(what)), "{what}: {err}");
    };
    too_large(&Raw::header(3, u64::MAX, 0).0, "tensor count");
    too_large(&Raw::header(3, 1 << 40, 0).data(1 << 12), "tensor count");
    too_large(&Raw::header(3, 0, u64::MAX).0, "key count");
    too_large(&Raw::header(3, 0, 1).u64(u64::MAX).data(64), "key #0");
    let array = |n: u64| Raw::header(3, 0, 1).string(b"k").u32(9).u32(8).u64(n);
    too_large(&array(u64::MAX).0, "array `k`");
    too_large(&array(MAX_ARRAY_LEN + 1).data(1 << 20), "array `k`");
    let long_value = Raw::header(3, 0, 1).string(b"k").u32(8).u64(MAX_STRING_BYTES + 1);
    too_large(&long_value.0, "`k`");
    let long_item = Raw::header(3, 0, 1).string(b"k").u32(9).u32(8).u64(1).u64(u64::MAX);
    too_large(&long_item.0, "item 0 of array `k`");
    // A length the caps allow but the file does not hold.
    let err = parse(&Raw::header(3, 0, 1).string(b"k").u32(8).u64(1000).bytes(b"short").0).unwrap_err();
    assert!(matches!(&err, GgufError::Truncated { what, .. } if what.contains("`k`")), "{err}");
}

#[test]
fn strings_must_be_utf8() {
    let not_utf8 = |bytes: Vec<u8>, what: &str| {
        let err = parse(&bytes).unwrap_err();
        assert!(matches!(&err, GgufError::NotUtf8 { what: w, .. } if w.contains(what)), "{what}: {err}");
    };
    not_utf8(Raw::header(3, 0, 1).string(b"k\xff").u32(4).u32(1).0, "key #0");
    not_utf8(Raw::header(3, 0, 1).string(b"k").u32(8).string(b"\xc3").0, "`k`");
    not_utf8(Raw::header(3, 0, 1).string(b"k").u32(9).u32(8).u64(2).string(b"a").string(b"\xe2\x82").0, "item 1");
    not_utf8(Raw::header(3, 1, 0).string(b"w\x80").data(64), "tensor #0");
}

#[test]
fn metadata_types_keys_and_alignment_are_checked() {
    let err = parse(&Raw::header(3, 0, 1).string(b"k").u32(13).u32(0).0).unwrap_err();
    assert!(matches!(&err, GgufError::UnknownValueType { key, id: 13, .. } if key == "k"), "{err}");
    let err = parse(&Raw::header(3, 0, 1).string(b"k").u32(9).u32(99).u64(0).0).unwrap_err();
    assert!(matches!(&err, GgufError::UnknownValueType { key, id: 99, .. } if key == "k"), "{err}");

    let dup = GgufWriter::new(3).metadata("a", MetaValue::U8(1)).metadata("a", MetaValue::U8(2));
    let err = parse(&dup.to_bytes()).unwrap_err();
    assert!(matches!(&err, GgufError::DuplicateKey { key, .. } if key == "a"), "{err}");
    let err = parse(&Raw::header(3, 0, 1).string(b"").u32(0).data(64)).unwrap_err();
    assert!(matches!(&err, GgufError::BadMetadata { .. }), "{err}");

    for bad in [MetaValue::U32(0), MetaValue::U32(48), MetaValue::I32(-32), MetaValue::String("32".into())] {
        let err = parse(&GgufWriter::new(3).metadata("general.alignment", bad).to_bytes()).unwrap_err();
        assert!(matches!(&err, GgufError::BadMetadata { key, .. } if key == "general.alignment"), "{err}");
    }
    let big = GgufWriter::new(3).metadata_array("k", ValueType::U64, MetaValue::IntArray(vec![-1]));
    let err = parse(&big.to_bytes()).unwrap_err();
    assert!(matches!(&err, GgufError::BadMetadata { key, .. } if key == "k"), "{err}");

    // Arrays of arrays: their lengths are kept, their contents skipped, their depth bounded.
    let nested = Raw::header(3, 0, 1).string(b"k").u32(9).u32(9).u64(1).u32(8).u64(1).string(b"x");
    assert_eq!(parse(&nested.0).expect("a nested array").metadata["k"], MetaValue::NestedArray(1));
    let mut deep = Raw::header(3, 0, 1).string(b"k").u32(9);
    for _ in 0..8 {
        deep = deep.u32(9).u64(1);
    }
    let err = parse(&deep.u32(0).u64(0).0).unwrap_err();
    assert!(matches!(&err, GgufError::BadMetadata { message, .. } if message.contains("nested")), "{err}");
}

#[test]
fn shapes_and_types_are_checked() {
    let one = |dims: &[u64], ty: u32| parse(&Raw::header(3, 1, 0).tensor("w", dims, ty, 0).data(1 << 12));
    let bad_shape = |dims: &[u64], ty: u32| {
        let err = one(dims, ty).unwrap_err();
        assert!(matches!(&err, GgufError::BadShape { tensor, .. } if tensor == "w"), "{dims:?}: {err}");
    };
    bad_shape(&[], 0);
    bad_shape(&[1, 1, 1, 1, 1], 0);
    bad_shape(&[4, 0], 0);
    bad_shape(&[1 << 32, 1 << 32], 0);
    bad_shape(&[u64::MAX], 0);
    bad_shape(&[33, 2], QuantType::Q4_0.ggml_id());
    bad_shape(&[128], QuantType::Q4K.ggml_id());
    assert!(one(&[32, 2, 1, 1], QuantType::Q4_0.ggml_id()).is_ok());

    let err = one(&[256], 16).unwrap_err();
    assert!(matches!(&err, GgufError::UnknownTensorType { tensor, id: 16, .. } if tensor == "w"), "{err}");
    assert!(err.to_string().contains("IQ2_XXS") && err.to_string().contains("Q4_K"), "{err}");
    let err = one(&[256], 9999).unwrap_err();
    assert!(err.to_string().contains("no ggml type"), "{err}");
}

#[test]
fn names_offsets_and_overlaps_are_checked() {
    let f32_4 = |raw: Raw, name: &str, offset: u64| raw.tensor(name, &[4], 0, offset);
    let err = parse(&f32_4(Raw::header(3, 1, 0), "w", 4).data(64)).unwrap_err();
    assert!(matches!(&err, GgufError::Misaligned { tensor, offset: 4, alignment: 32, .. } if tensor == "w"), "{err}");
    let err = parse(&f32_4(Raw::header(3, 1, 0), "w", 32).data(40)).unwrap_err();
    assert!(matches!(&err, GgufError::OutOfBounds { tensor, .. } if tensor == "w"), "{err}");
    let err = parse(&f32_4(Raw::header(3, 1, 0), "w", u64::MAX - 31).data(40)).unwrap_err();
    assert!(matches!(&err, GgufError::OutOfBounds { .. }), "{err}");

    let two = |a: u64, b: u64| f32_4(f32_4(Raw::header(3, 2, 0), "a", a), "b", b).data(128);
    assert!(parse(&two(32, 0)).is_ok());
    let err = parse(&two(0, 0)).unwrap_err();
    assert!(matches!(&err, GgufError::Overlap { .. }), "{err}");
    let big = f32_4(Raw::header(3, 2, 0), "a", 64).tensor("b", &[16], 0, 32).data(128);
    let err = parse(&big).unwrap_err();
    assert!(matches!(&err, GgufError::Overlap { first, second, .. } if first == "b" && second == "a"), "{err}");

    let err = parse(&f32_4(f32_4(Raw::header(3, 2, 0), "a", 0), "a", 32).data(64)).unwrap_err();
    assert!(matches!(&err, GgufError::DuplicateTensor { tensor, .. } if tensor == "a"), "{err}");
    let err = parse(&f32_4(Raw::header(3, 1, 0), "", 0).data(64)).unwrap_err();
    assert!(matches!(&err, GgufError::BadTensorName { index: 0, .. }), "{err}");
}

#[test]
fn a_file_on_disk_reads_as_in_memory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("m.gguf");
    GgufWriter::new(3).metadata("general.architecture", MetaValue::String("gpt2".into())).write(&path).expect("write");
    let file = crate::GgufFile::read(&path).expect("a valid file");
    assert_eq!(file.path, path);
    assert_eq!(file.architecture().expect("an architecture"), "gpt2");
    assert!(crate::is_gguf(&path));
    assert!(!crate::is_gguf(dir.path()));
    let err = crate::GgufFile::read(&dir.path().join("absent.gguf")).unwrap_err();
    assert!(matches!(&err, GgufError::Io { path, .. } if path.ends_with("absent.gguf")), "{err}");
}
