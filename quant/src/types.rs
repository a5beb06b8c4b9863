//! [`QuantType`]: the tensor types of GGUF that mlmf computes with, by ggml's type ids.

/// A tensor type of GGUF (ggml's `ggml_type`) that mlmf reads and computes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// 32 values: f16 scale, 4-bit values offset by 8.
    Q4_0,
    /// 32 values: f16 scale and minimum, 4-bit values.
    Q4_1,
    /// 32 values: f16 scale, 5-bit values offset by 16.
    Q5_0,
    /// 32 values: f16 scale and minimum, 5-bit values.
    Q5_1,
    /// 32 values: f16 scale, 8-bit values.
    Q8_0,
    /// 32 values: f16 scale, f16 scaled sum, 8-bit values (an activation type).
    Q8_1,
    /// 256 values in 16 sub-blocks: 2-bit values, 4-bit scales and minimums.
    Q2K,
    /// 256 values in 16 sub-blocks: 3-bit values, 6-bit scales.
    Q3K,
    /// 256 values in 8 sub-blocks: 4-bit values, 6-bit scales and minimums.
    Q4K,
    /// 256 values in 8 sub-blocks: 5-bit values, 6-bit scales and minimums.
    Q5K,
    /// 256 values in 16 sub-blocks: 6-bit values, 8-bit scales.
    Q6K,
    /// 256 values: f32 scale, 8-bit values, sums of 16 (an activation type).
    Q8K,
}

impl QuantType {
    /// Every type, in ggml id order.
    pub const ALL: [QuantType; 15] = [
        QuantType::F32,
        QuantType::F16,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8_0,
        QuantType::Q8_1,
        QuantType::Q2K,
        QuantType::Q3K,
        QuantType::Q4K,
        QuantType::Q5K,
        QuantType::Q6K,
        QuantType::Q8K,
        QuantType::BF16,
    ];

    /// The type of ggml's id `id`, `None` for ids mlmf does not compute with.
    pub fn from_ggml_id(id: u32) -> Option<QuantType> {
        QuantType::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// ggml's id of the type (`ggml_type`).
    pub fn ggml_id(self) -> u32 {
        match self {
            QuantType::F32 => 0,
            QuantType::F16 => 1,
            QuantType::Q4_0 => 2,
            QuantType::Q4_1 => 3,
            QuantType::Q5_0 => 6,
            QuantType::Q5_1 => 7,
            QuantType::Q8_0 => 8,
            QuantType::Q8_1 => 9,
            QuantType::Q2K => 10,
            QuantType::Q3K => 11,
            QuantType::Q4K => 12,
            QuantType::Q5K => 13,
            QuantType::Q6K => 14,
            QuantType::Q8K => 15,
            QuantType::BF16 => 30,
        }
    }

    /// The name ggml and `gguf` give it (`Q4_K`).
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F32 => "F32",
            QuantType::F16 => "F16",
            QuantType::BF16 => "BF16",
            QuantType::Q4_0 => "Q4_0",
            QuantType::Q4_1 => "Q4_1",
            QuantType::Q5_0 => "Q5_0",
            QuantType::Q5_1 => "Q5_1",
            QuantType::Q8_0 => "Q8_0",
            QuantType::Q8_1 => "Q8_1",
            QuantType::Q2K => "Q2_K",
            QuantType::Q3K => "Q3_K",
            QuantType::Q4K => "Q4_K",
            QuantType::Q5K => "Q5_K",
            QuantType::Q6K => "Q6_K",
            QuantType::Q8K => "Q8_K",
        }
    }

    /// Values per block (1 for the float types).
    pub fn block_values(self) -> usize {
        match self {
            QuantType::F32 | QuantType::F16 | QuantType::BF16 => 1,
            QuantType::Q4_0
            | QuantType::Q4_1
            | QuantType::Q5_0
            | QuantType::Q5_1
            | QuantType::Q8_0
            | QuantType::Q8_1 => 32,
            QuantType::Q2K | QuantType::Q3K | QuantType::Q4K | QuantType::Q5K | QuantType::Q6K | QuantType::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::F32 => 4,
            QuantType::F16 | QuantType::BF16 => 2,
            QuantType::Q4_0 => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q5_0 => 22,
            QuantType::Q5_1 => 24,
            QuantType::Q8_0 => 34,
            QuantType::Q8_1 => 36,
            QuantType::Q2K => 84,
            QuantType::Q3K => 110,
            QuantType::Q4K => 144,
            QuantType::Q5K => 176,
            QuantType::Q6K => 210,
            QuantType::Q8K => 292,
        }
    }

    /// Whether it is a float type (stored value by value).
    pub fn is_float(self) -> bool {
        self.block_values() == 1
    }

    /// Bytes of `n` values, `None` when `n` is not a whole number of blocks or overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bv = self.block_values() as u64;
        if !n.is_multiple_of(bv) {
            return None;
        }
        (n / bv).checked_mul(self.block_bytes() as u64)
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for t in QuantType::ALL {
            assert_eq!(QuantType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(QuantType::from_ggml_id(4), None, "Q4_2 was removed from ggml");
        assert_eq!(QuantType::Q4K.bytes_for(512), Some(288));
        assert_eq!(QuantType::Q4K.bytes_for(100), None);
    }
}
