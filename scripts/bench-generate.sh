#!/usr/bin/env bash
# The generation benchmark with PyTorch measured in the same run, at one thread and at two:
# installs PyTorch + transformers (a 2.5 GB download from PyPI, once) into
# ~/.cache/mlmf/venv-oracle, then runs `cargo bench --bench generate` at each thread count.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$HOME/.cache/mlmf/venv-oracle"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  bash tests/fixtures/scripts/setup_oracle_env.sh "$venv"
fi
export MLMF_PYTORCH_PYTHON="$venv/bin/python"
for threads in ${MLMF_BENCH_THREADS:-1 2}; do
  RAYON_NUM_THREADS=$threads cargo bench --bench generate
done
