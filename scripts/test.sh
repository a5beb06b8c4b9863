#!/usr/bin/env bash
# The whole test suite: installs, when it can, the MiniLM reference weights, SmolLM2's GGUF
# file (scripts/fetch-smollm2.sh), the test tools
# (OpenAI's SDK, the OpenAPI, JSON Schema and Kubernetes validators, Prometheus' parser) and
# Debian's Chromium, then runs every test of the workspace. CI (.ci/run) calls this with
# MLMF_REQUIRE_MINILM=1 and MLMF_REQUIRE_TEST_TOOLS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse builds across clones: a target directory outside the checkout.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mlmf/target}"
if ! bash scripts/fetch-minilm.sh; then
  if [ "${MLMF_REQUIRE_MINILM:-0}" = 1 ]; then
    echo "test.sh: MiniLM weights are required but could not be installed" >&2
    exit 1
  fi
  echo "test.sh: MiniLM weights unavailable; its test will say SKIPPED" >&2
fi
if ! bash scripts/fetch-smollm2.sh >/dev/null; then
  if [ "${MLMF_REQUIRE_SMOLLM2:-0}" = 1 ]; then
    echo "test.sh: SmolLM2's GGUF file is required but could not be installed" >&2
    exit 1
  fi
  echo "test.sh: SmolLM2's GGUF file unavailable; its tests will say SKIPPED" >&2
fi
if ! bash scripts/setup-test-tools.sh; then
  if [ "${MLMF_REQUIRE_TEST_TOOLS:-0}" = 1 ]; then
    echo "test.sh: the test tools are required but could not be installed" >&2
    exit 1
  fi
  echo "test.sh: test tools unavailable; their tests will say SKIPPED" >&2
fi
if ! bash scripts/setup-netns.sh; then
  if [ "${MLMF_REQUIRE_TEST_TOOLS:-0}" = 1 ]; then
    echo "test.sh: iproute2 and curl are required but could not be installed" >&2
    exit 1
  fi
  echo "test.sh: iproute2 or curl unavailable; the partition tests will say skipped" >&2
fi
if ! bash scripts/setup-chromium.sh; then
  if [ "${MLMF_REQUIRE_TEST_TOOLS:-0}" = 1 ]; then
    echo "test.sh: Chromium is required but could not be installed" >&2
    exit 1
  fi
  echo "test.sh: Chromium unavailable; the dashboard test will say SKIPPED" >&2
fi
# The benches must keep compiling; running them is `cargo bench` (see BENCHMARKS.md).
cargo test --workspace --benches --no-run
cargo test --workspace --lib --bins --tests --examples "$@"
cargo test --workspace --doc "$@"
# The usage examples run for real against local clusters on 127.0.0.1.
for example in single_node cluster_layer_sharding custom_configuration distributed_inference custom_balancer streaming_generation; do
  echo "example $example"
  cargo run --quiet --example "$example"
done
