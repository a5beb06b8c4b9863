#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard test (tests/dashboard.rs drives it headless
# over the DevTools protocol). Needs root (or sudo) and Debian's package mirror.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null)"; exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
chromium --version
