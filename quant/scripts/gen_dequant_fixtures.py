#!/usr/bin/env python3
"""Writes quant/tests/data/<type>.blocks and <type>.f32: random blocks of each GGUF type and
what gguf-py's `gguf.quants.dequantize` makes of them (little-endian f32); and
q8_0_quantize.f32 / q8_0_quantize.blocks: random values and gguf-py's Q8_0 quantization of them
(bit-exact with ggml's `quantize_row_q8_0_ref`, says gguf-py).

The Rust tests `tests/dequantize.rs` and `tests/quantize.rs` compare mlmf-quant with these bit
for bit.
Run from anywhere with gguf==0.19.0 and numpy installed:

    python3 quant/scripts/gen_dequant_fixtures.py

The bytes are random except the f16 scale fields, which are set to finite values (with a zero,
a subnormal, negative and large scales among them) because a NaN scale says nothing about the
layout and NaN payload conversions differ between numpy and F16C.
"""
import os

import numpy as np
from gguf.constants import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

# type name -> (values per block, bytes per block, byte offsets of f16 scale fields)
LAYOUTS = {
    "Q4_0": (32, 18, [0]),
    "Q4_1": (32, 20, [0, 2]),
    "Q5_0": (32, 22, [0]),
    "Q5_1": (32, 24, [0, 2]),
    "Q8_0": (32, 34, [0]),
    "Q2_K": (256, 84, [80, 82]),
    "Q3_K": (256, 110, [108]),
    "Q4_K": (256, 144, [0, 2]),
    "Q5_K": (256, 176, [0, 2]),
    "Q6_K": (256, 210, [208]),
}

rng = np.random.default_rng(20240611)


def scale_values(count: int) -> np.ndarray:
    """Finite f16 scales: mostly ordinary magnitudes of both signs, plus a few edge cases."""
    v = (rng.uniform(-1.0, 1.0, count) * 2.0 ** rng.integers(-12, 4, count)).astype(np.float16)
    specials = np.array([0.0, 6.0e-8, -3.0e-5, 1000.0, -0.0], dtype=np.float16)
    k = min(count, len(specials))
    v[:k] = specials[:k]
    rng.shuffle(v)
    return v


def write(name: str, raw: np.ndarray, qtype: T) -> None:
    deq = dequantize(raw, qtype).astype("<f4", copy=False)
    with open(os.path.join(OUT, f"{name.lower()}.blocks"), "wb") as f:
        f.write(raw.tobytes())
    with open(os.path.join(OUT, f"{name.lower()}.f32"), "wb") as f:
        f.write(deq.tobytes())


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    for name, (values, nbytes, scale_offsets) in LAYOUTS.items():
        n_blocks = 12 if values == 32 else 5
        raw = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
        for off in scale_offsets:
            raw[:, off : off + 2] = scale_values(n_blocks).view(np.uint8).reshape(n_blocks, 2)
        write(name, raw.reshape(-1), T[name])

    # Float types: 256 values each, finite (no NaN, see above), with zeros, subnormals, infinities.
    f32 = (rng.standard_normal(256) * 10.0 ** rng.integers(-30, 30, 256)).astype("<f4")
    f32[:4] = [0.0, -0.0, 1e-42, -3.4e38]
    write("F32", f32.view(np.uint8), T.F32)

    f16 = (rng.standard_normal(256) * 2.0 ** rng.integers(-20, 14, 256)).astype("<f2")
    f16[:6] = [0.0, -0.0, np.inf, -np.inf, 6.0e-8, 65504.0]
    write("F16", f16.view(np.uint8), T.F16)

    bf16 = rng.integers(0, 1 << 16, 256, dtype=np.uint16)
    nan = (bf16 & 0x7F80) == 0x7F80  # exponent all ones: inf or NaN; keep only the infinities
    bf16[nan] &= 0xFF80
    write("BF16", bf16.astype("<u2").view(np.uint8), T.BF16)

    # Q8_0 quantization: ordinary values, a block of zeros, a block with ties (x·127/amax = k + 0.5).
    x = (rng.standard_normal(32 * 8) * 2.0 ** rng.integers(-8, 8, 32 * 8)).astype("<f4")
    x[32:64] = 0.0
    x[64:96] = np.arange(32, dtype=np.float32) + np.float32(0.5)
    x[95] = 127.0
    with open(os.path.join(OUT, "q8_0_quantize.f32"), "wb") as f:
        f.write(x.tobytes())
    with open(os.path.join(OUT, "q8_0_quantize.blocks"), "wb") as f:
        f.write(quantize(x.reshape(8, 32), T.Q8_0).tobytes())


if __name__ == "__main__":
    main()
