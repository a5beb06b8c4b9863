#!/usr/bin/env bash
# The reference tests on burn's wgpu backend. With the `wgpu` feature the default
# device is wgpu; on a machine without a GPU it runs on Mesa's lavapipe (software Vulkan),
# which this script installs (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mlmf/target}"
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
# (tests/cli.rs is left out: wgpu and Mesa print driver notices on stderr, which its
# one-line-error assertions would count.)
cargo test --features wgpu --test reference "$@"
