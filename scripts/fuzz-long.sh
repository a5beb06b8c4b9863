#!/usr/bin/env bash
# Long fuzzing runs: each target of tests/fuzz.rs for SECONDS (default 600) of wall time, in
# rounds of ROUND cases with a fresh random seed each, and a table of what ran. Not in CI
# (CI runs every target at its bounded case count); its figures go in BENCHMARKS.md.
#
#   scripts/fuzz-long.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(peer_frames decompression wire_messages checkpoint_config safetensors_headers checkpoint_index
        tokenizer_files http_json_bodies kserve_bodies)
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/mlmf/target}
# The test binary, built once (debug, as CI runs it).
bin=$(cargo test --test fuzz --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "fuzz" and m.get("executable"):
        print(m["executable"])')
echo "| target | cases | time | failures |"
echo "|---|---|---|---|"
for t in "${targets[@]}"; do
    # A round takes a few seconds at most, so the run ends close to the deadline.
    case $t in
        tokenizer_files) round=50 ;;
        checkpoint_config | checkpoint_index | safetensors_headers) round=500 ;;
        http_json_bodies | kserve_bodies) round=1000 ;;
        *) round=20000 ;;
    esac
    start=$(date +%s)
    cases=0
    failures=0
    while [ $(($(date +%s) - start)) -lt "$seconds" ]; do
        if ! PROPTEST_CASES=$round "$bin" --exact "$t" --test-threads 1 >"/tmp/mlmf-fuzz-long-$t.log" 2>&1; then
            failures=$((failures + 1))
            cp "/tmp/mlmf-fuzz-long-$t.log" "/tmp/mlmf-fuzz-long-$t.failure-$failures.log"
        fi
        cases=$((cases + round))
    done
    echo "| \`$t\` | $cases | $(($(date +%s) - start)) s | $failures |"
done
