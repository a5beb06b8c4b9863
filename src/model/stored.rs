//! How a checkpoint's tensors are stored: [`StoredDtype`] (safetensors' dtypes and GGUF's
//! quantized types) and [`RowOrder`] (the rows llama.cpp permutes for its RoPE).

use mlmf_quant::QuantType;
use serde::Serialize;

/// How a tensor is stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE binary64.
    F64,
    /// Any other dtype (integers, fp8, ...): listed, not computed with.
    Other(&'static str),
    /// A GGUF tensor type: quantized blocks (or a float type of GGUF's), computed as stored.
    Quant(QuantType),
}

impl Serialize for StoredDtype {
    /// As its name (`"F32"`, `"Q4_K"`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl StoredDtype {
    pub(crate) fn parse(s: &str) -> Option<StoredDtype> {
        Some(match s {
            "F32" => StoredDtype::F32,
            "F16" => StoredDtype::F16,
            "BF16" => StoredDtype::BF16,
            "F64" => StoredDtype::F64,
            "I64" => StoredDtype::Other("I64"),
            "I32" => StoredDtype::Other("I32"),
            "I16" => StoredDtype::Other("I16"),
            "I8" => StoredDtype::Other("I8"),
            "U8" => StoredDtype::Other("U8"),
            "U16" => StoredDtype::Other("U16"),
            "U32" => StoredDtype::Other("U32"),
            "U64" => StoredDtype::Other("U64"),
            "BOOL" => StoredDtype::Other("BOOL"),
            "F8_E4M3" => StoredDtype::Other("F8_E4M3"),
            "F8_E5M2" => StoredDtype::Other("F8_E5M2"),
            _ => return None,
        })
    }

    /// Bytes per element (per block for [`StoredDtype::Quant`], whose rows are read by
    /// [`MappedCheckpoint`] as whole blocks).
    pub fn size(self) -> usize {
        match self {
            StoredDtype::Quant(q) => q.block_bytes(),
            StoredDtype::F32 => 4,
            StoredDtype::F16 | StoredDtype::BF16 => 2,
            StoredDtype::F64 => 8,
            StoredDtype::Other(n) => match n {
                "I64" | "U64" => 8,
                "I32" | "U32" => 4,
                "I16" | "U16" => 2,
                _ => 1,
            },
        }
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "F32",
            StoredDtype::F16 => "F16",
            StoredDtype::BF16 => "BF16",
            StoredDtype::F64 => "F64",
            StoredDtype::Other(n) => n,
            StoredDtype::Quant(q) => q.name(),
        }
    }
}

/// The order in which a matrix's rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum RowOrder {
    /// As the model computes with them.
    #[default]
    Stored,
    /// The query or key projection of a LLaMA-family GGUF file, whose converter permuted the
    /// rows of each of `heads` heads so that GGML's RoPE rotates adjacent pairs: the
    /// `transformers` row `s·d/2 + j` of a head of width `d` is stored at `2j + s`.
    RopePairs {
        /// The heads the rows are grouped in.
        heads: usize,
    },
}

impl RowOrder {
    /// Where the model's row `r` of a matrix of `rows` rows is stored.
    pub fn stored_row(self, r: usize, rows: usize) -> usize {
        match self {
            RowOrder::Stored => r,
            RowOrder::RopePairs { heads } => {
                let d = rows / heads.max(1);
                if d < 2 {
                    return r;
                }
                let half = d / 2;
                let (head, rem) = (r / d, r % d);
                head * d + 2 * (rem % half) + rem / half
            }
        }
    }
}
