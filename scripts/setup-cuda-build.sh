#!/usr/bin/env bash
# Makes `cargo build --features cuda` work on a machine that reaches only the package
# registries. burn's `cuda` feature pulls cubecl-cuda, which depends on cubecl-llvm, whose
# build dependency tracel-llvm-bundler downloads a prebuilt LLVM from GitHub at build time.
# That build script skips the download when
#   <data dir>/tracel/tracel-llvm-23.1.0-4/.tracel-llvm-installed
# exists (data dir: $XDG_DATA_HOME or ~/.local/share), and cubecl-llvm then links against
# that directory's bin/llvm-config. This installs there the relocatable static LLVM 23.1.1
# that PyPI ships as mlc-llvm-static (with mlc-llvm-static-extra-targets, which has the
# NVPTX backend), checking the wheels' SHA-256 first, and writes the marker.
# The NVIDIA driver and CUDA runtime are only needed to *run* on a GPU, not to build.
set -euo pipefail
data="${XDG_DATA_HOME:-$HOME/.local/share}"
dest="$data/tracel/tracel-llvm-23.1.0-4"
marker="$dest/.tracel-llvm-installed"
if [ -f "$marker" ] && "$dest/bin/llvm-config" --version >/dev/null 2>&1; then
  echo "LLVM for cubecl already in $dest ($("$dest/bin/llvm-config" --version))"; exit 0
fi
py=$(command -v python3) || { echo "setup-cuda-build: python3 is needed" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download --no-deps --quiet --disable-pip-version-check -d "$tmp" \
  mlc-llvm-static==23.1.1.post0 mlc-llvm-static-extra-targets==23.1.1.post0
(cd "$tmp" && sha256sum -c --quiet) <<'SUMS'
dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5  mlc_llvm_static-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl
c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929  mlc_llvm_static_extra_targets-23.1.1.post0-py3-none-manylinux_2_28_x86_64.whl
SUMS
rm -rf "$dest"
mkdir -p "$dest"
"$py" - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], os.path.realpath(sys.argv[2])
prefix = "mlc_llvm_static/static/"
for wheel in sorted(glob.glob(os.path.join(tmp, "*.whl"))):
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if not name.startswith(prefix) or name.endswith("/"):
                continue
            out = os.path.realpath(os.path.join(dest, name[len(prefix):]))
            if not out.startswith(dest + os.sep):
                sys.exit(f"{wheel}: {name} leaves the destination")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(info) as src, open(out, "wb") as dst:
                dst.write(src.read())
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(out, mode)
PY
chmod +x "$dest/bin/llvm-config"
"$dest/bin/llvm-config" --version
"$dest/bin/llvm-config" --targets-built | tr ' ' '\n' | grep -qx NVPTX || { echo "setup-cuda-build: no NVPTX backend" >&2; exit 1; }
touch "$marker"
echo "LLVM $("$dest/bin/llvm-config" --version) for cubecl installed in $dest; now: cargo build --release --features cuda"
