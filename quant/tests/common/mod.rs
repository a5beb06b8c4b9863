//! Random blocks for the tests: random bytes with the f16 scale fields set to finite values of
//! moderate size (a random NaN scale would say nothing about the kernels).

#![allow(dead_code)]

use mlmf_quant::QuantType;

/// A small deterministic generator (xorshift64*), so the tests need no extra crates.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        2.0 * self.unit() - 1.0
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Byte offsets of the f16 scale fields in a block of `ty`.
pub fn scale_offsets(ty: QuantType) -> &'static [usize] {
    use QuantType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4K | T::Q5K => &[0, 2],
        T::Q2K => &[80, 82],
        T::Q3K => &[108],
        T::Q6K => &[208],
        _ => &[],
    }
}

/// A finite f16 of magnitude between 2^-10 and 2 (sometimes zero), either sign.
pub fn scale(rng: &mut Rng) -> [u8; 2] {
    let v =
        if rng.next_u64().is_multiple_of(16) { 0.0 } else { rng.signed() * 2f32.powi(-((rng.next_u64() % 10) as i32)) };
    half::f16::from_f32(v).to_bits().to_le_bytes()
}

/// `values` values of weight type `ty` (a whole number of blocks), as bytes.
pub fn random_weights(ty: QuantType, values: usize, rng: &mut Rng) -> Vec<u8> {
    use QuantType as T;
    match ty {
        T::F32 => (0..values).flat_map(|_| rng.signed().to_le_bytes()).collect(),
        T::F16 => (0..values).flat_map(|_| half::f16::from_f32(rng.signed()).to_bits().to_le_bytes()).collect(),
        T::BF16 => (0..values).flat_map(|_| half::bf16::from_f32(rng.signed()).to_bits().to_le_bytes()).collect(),
        _ => {
            let blocks = values / ty.block_values();
            let mut out = rng.bytes(blocks * ty.block_bytes());
            for b in out.chunks_exact_mut(ty.block_bytes()) {
                for &off in scale_offsets(ty) {
                    b[off..off + 2].copy_from_slice(&scale(rng));
                }
            }
            out
        }
    }
}

/// Activations: normal-ish values with occasional outliers, as activations have.
pub fn random_activations(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let v = rng.signed() + rng.signed() + rng.signed();
            if rng.next_u64().is_multiple_of(64) { v * 20.0 } else { v }
        })
        .collect()
}

/// Every weight type.
pub const WEIGHT_TYPES: [QuantType; 13] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2K,
    QuantType::Q3K,
    QuantType::Q4K,
    QuantType::Q5K,
    QuantType::Q6K,
];
