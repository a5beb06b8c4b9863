#!/usr/bin/env bash
# Makes the Q8_0 and Q4_K_M variants of SmolLM2-135M-Instruct that the benchmarks compare,
# by requantizing the Q4_1 file (scripts/fetch-smollm2.sh) with llama.cpp's own llama-quantize
# (scripts/build-llama-cpp.sh, built on first use). They land beside the Q4_1 file in
# DEST (default ${MLMF_CACHE:-~/.cache/mlmf}/smollm2) as SmolLM2-135M-Instruct.<TYPE>.gguf.
# Requantizing from Q4_1 means their weights are Q4_1's rounded again, not the original
# bf16 weights quantized: fine for speed comparisons, not for quality ones.
# Files already present are kept. Prints one path per type, the last on the last line.
# Usage: requantize-smollm2.sh [DEST [TYPE...]]   (types default to Q8_0 Q4_K_M)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest="${1:-${MLMF_CACHE:-$HOME/.cache/mlmf}/smollm2}"
shift || true
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q8_0 Q4_K_M)

src=$("$here/fetch-smollm2.sh" "$dest" | tail -n1)
bin=$("$here/build-llama-cpp.sh" | tail -n1)
for type in "${types[@]}"; do
  out="$dest/SmolLM2-135M-Instruct.$type.gguf"
  if [ ! -s "$out" ]; then
    echo "requantize-smollm2: $src -> $out" >&2
    # --allow-requantize: the input is already quantized. Written aside, renamed when complete.
    "$bin/llama-quantize" --allow-requantize "$src" "$out.part" "$type" >&2 \
      || { rm -f "$out.part"; echo "requantize-smollm2: llama-quantize failed for $type" >&2; exit 1; }
    mv "$out.part" "$out"
  fi
  echo "$out"
done
