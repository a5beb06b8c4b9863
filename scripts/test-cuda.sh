#!/usr/bin/env bash
# The reference tests on burn's CUDA backend (with the `cuda` feature the default device is
# CUDA device 0): every strategy of every model against the PyTorch references, and the KV-
# cached generation, on the GPU. Needs an NVIDIA GPU with its driver; on a machine without
# one it says so and exits 0 having run nothing. The build itself needs only
# scripts/setup-cuda-build.sh (no download at build time).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mlmf/target}"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "test-cuda.sh: SKIPPED: no NVIDIA GPU here (nvidia-smi finds none); nothing was run on CUDA"
  exit 0
fi
nvidia-smi -L
bash scripts/setup-cuda-build.sh
cargo test --release --features cuda --test reference --test generation "$@"
