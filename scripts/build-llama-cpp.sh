#!/usr/bin/env bash
# Builds llama.cpp, the anchor the benchmarks measure mlmf against, and caches it.
# The sources come from PyPI's source package llama-cpp-python 0.3.36, which vendors the
# llama.cpp tree at vendor/llama.cpp (see ../shared/cases/README.md, "SmolLM2"); no other
# network source is used. cmake and ninja are the system's when present, else PyPI's wheels
# in a venv under the cache. The build runs in a temporary folder beside the cache and is
# moved into place at the end, so an interrupted run leaves nothing half-built behind.
#
# Result, in ${MLMF_CACHE:-~/.cache/mlmf}/llama.cpp-0.3.36/:
#   bin/                 llama-bench llama-server llama-quantize and the RPC server
#                        (its CMake target in this tree is ggml-rpc-server), statically linked
#   convert_hf_to_gguf.py, conversion/, gguf-py/   the tree's converter, for later use
#   BUILD-INFO           the CPU, compiler, commit and cmake flags of the build
# A second run only prints the bin path. Prints the bin directory on its last line.
# Environment: MLMF_CACHE (cache root), JOBS (parallel compile jobs, default 2).
set -euo pipefail
version=0.3.36
sdist_sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
cache="${MLMF_CACHE:-$HOME/.cache/mlmf}"
dest="$cache/llama.cpp-$version"
jobs="${JOBS:-2}"
log() { echo "build-llama-cpp: $*" >&2; }

# The folder only appears by the final rename, so a present llama-bench means a finished build.
if [ -x "$dest/bin/llama-bench" ]; then
  echo "$dest/bin"; exit 0
fi

py=$(command -v python3 || command -v python) || { log "python3 with pip is needed"; exit 1; }
mkdir -p "$cache"

# cmake and ninja: the system's if present, else PyPI's wheels in a venv kept in the cache.
cmake_bin=$(command -v cmake || true)
ninja_bin=$(command -v ninja || true)
if [ -z "$cmake_bin" ] || [ -z "$ninja_bin" ]; then
  tools="$cache/build-tools"
  if [ ! -x "$tools/bin/cmake" ] || [ ! -x "$tools/bin/ninja" ]; then
    log "installing cmake and ninja from PyPI into $tools"
    rm -rf "$tools"
    "$py" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check cmake ninja >&2
  fi
  [ -n "$cmake_bin" ] || cmake_bin="$tools/bin/cmake"
  [ -n "$ninja_bin" ] || ninja_bin="$tools/bin/ninja"
fi
log "cmake: $cmake_bin ($("$cmake_bin" --version | head -n1)), ninja: $ninja_bin"

# Work beside the cache (same filesystem, so the final mv is a rename); removed on any exit.
tmp=$(mktemp -d "$cache/.llama.cpp-$version.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The source package. --no-binary names only this package: with ":all:" pip would also build
# the sdist's build requirements (cmake itself among them) from source just to read metadata.
log "downloading llama-cpp-python==$version (sdist) from PyPI"
"$py" -m pip download --no-deps --quiet --disable-pip-version-check \
  --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$tmp/dl" >&2
sdist="$tmp/dl/llama_cpp_python-$version.tar.gz"
echo "$sdist_sha256  $sdist" | sha256sum -c --status || { log "SHA-256 mismatch for $sdist"; exit 1; }
# The whole sdist is unpacked: it also carries the git metadata that gives the build its commit.
tar -xzf "$sdist" -C "$tmp"
src="$tmp/llama_cpp_python-$version/vendor/llama.cpp"
[ -f "$src/CMakeLists.txt" ] || { log "no vendor/llama.cpp in the sdist"; exit 1; }

# Instruction sets. Never GGML_NATIVE and never AMX: these virtual machines list AMX among
# their CPU flags, but AMX code dies with SIGILL. Every other extension is enabled only when
# the CPU lists it: an AMD EPYC without avx512f drops the AVX-512 flags, and one without
# avx_vnni (Zen 4 has AVX512-VNNI but not the VEX-encoded AVX-VNNI) drops GGML_AVX_VNNI, since
# ggml would otherwise emit vpdpbusd {vex}, which that CPU does not have.
if command -v lscpu >/dev/null 2>&1; then
  cpu_flags=" $(lscpu | sed -n 's/^Flags:[[:space:]]*//p') "
  cpu_name=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
else
  cpu_flags=" $(sed -n 's/^flags[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1) "
  cpu_name=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
fi
has() { [[ "$cpu_flags" == *" $1 "* ]]; }
onoff() { if has "$1"; then echo ON; else echo OFF; fi; }
avx512=OFF
if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then avx512=ON; fi
avx512_ext() { if [ "$avx512" = ON ] && has "$1"; then echo ON; else echo OFF; fi; }
flags=(
  -DCMAKE_BUILD_TYPE=Release
  -DGGML_NATIVE=OFF
  -DGGML_AVX="$(onoff avx)"
  -DGGML_AVX2="$(onoff avx2)"
  -DGGML_FMA="$(onoff fma)"
  -DGGML_F16C="$(onoff f16c)"
  -DGGML_BMI2="$(onoff bmi2)"
  -DGGML_AVX512="$avx512"
  -DGGML_AVX512_VBMI="$(avx512_ext avx512vbmi)"
  -DGGML_AVX512_VNNI="$(avx512_ext avx512_vnni)"
  -DGGML_AVX512_BF16="$(avx512_ext avx512_bf16)"
  -DGGML_AVX_VNNI="$(onoff avx_vnni)"
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
  -DGGML_RPC=ON
  -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF
  # Static binaries: the build folder is deleted, so nothing may point into it.
  -DBUILD_SHARED_LIBS=OFF
  # No web UI download from Hugging Face at build time (unreachable here); the server runs without it.
  -DLLAMA_USE_PREBUILT_UI=OFF
)
log "CPU: $cpu_name"
log "cmake flags: ${flags[*]}"

"$cmake_bin" -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_MAKE_PROGRAM="$ninja_bin" "${flags[@]}" >&2

# Targets, by the names this tree actually defines (the RPC server was renamed over time).
available=$("$cmake_bin" --build "$tmp/build" --target help 2>/dev/null | sed -n 's/^\([^:[:space:]]*\):.*/\1/p')
targets=()
for t in llama-bench llama-server llama-quantize rpc-server ggml-rpc-server; do
  if grep -qx "$t" <<<"$available"; then targets+=("$t"); fi
done
for t in llama-bench llama-server llama-quantize; do
  grep -qx "$t" <<<"$available" || { log "target $t missing from the tree"; exit 1; }
done
log "building ${targets[*]} with $jobs jobs"
start=$(date +%s)
"$cmake_bin" --build "$tmp/build" -j"$jobs" --target "${targets[@]}" >&2
log "built in $(( $(date +%s) - start )) s"

# Assemble the result, then move it into place in one rename.
out="$tmp/out"
mkdir -p "$out/bin"
for t in "${targets[@]}"; do cp "$tmp/build/bin/$t" "$out/bin/"; done
cp "$src/convert_hf_to_gguf.py" "$out/"
cp -r "$src/gguf-py" "$out/"
[ -d "$src/conversion" ] && cp -r "$src/conversion" "$out/"
[ -d "$src/requirements" ] && cp -r "$src/requirements" "$out/" && cp "$src/requirements.txt" "$out/" 2>/dev/null || true
commit=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
{
  echo "llama-cpp-python $version (sdist sha256 $sdist_sha256), llama.cpp commit $commit"
  echo "CPU: $cpu_name"
  echo "compiler: $(${CXX:-c++} --version 2>/dev/null | head -n1)"
  echo "targets: ${targets[*]}"
  echo "cmake flags: ${flags[*]}"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(( $(date +%s) - start )) s with $jobs jobs"
} >"$out/BUILD-INFO"
"$out/bin/llama-bench" --help >/dev/null 2>&1 || { log "the built llama-bench does not run"; exit 1; }
rm -rf "$dest"
mv "$out" "$dest"
echo "$dest/bin"
