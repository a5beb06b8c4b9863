#!/usr/bin/env bash
# The partition tests (tests/consensus.rs) make network namespaces with iproute2's `ip` and
# ask each node for its status with curl from inside its namespace: installs both (Debian)
# when missing. Namespaces themselves need root; without it those tests say skipped.
set -euo pipefail
if command -v ip >/dev/null && command -v curl >/dev/null; then
  echo "ip and curl already installed"; exit 0
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends iproute2 curl
