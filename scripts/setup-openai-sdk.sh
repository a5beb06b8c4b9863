#!/usr/bin/env bash
# Installs OpenAI's official Python SDK (from PyPI, pinned) into a venv for the test that
# points it at a running cluster (tests/openai_sdk.rs). DEST defaults to .cache/openai-sdk.
set -euo pipefail
dest="${1:-$(dirname "$0")/../.cache/openai-sdk}"
version=3.57.0
if [ -x "$dest/bin/python" ] && "$dest/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$version')" 2>/dev/null; then
  echo "openai $version already in $dest"; exit 0
fi
py=$(command -v python3 || command -v python) || { echo "setup-openai-sdk: python3 is needed" >&2; exit 1; }
"$py" -m venv "$dest"
"$dest/bin/pip" install --quiet --disable-pip-version-check "openai==$version"
"$dest/bin/python" -c "import openai; print('openai', openai.__version__, 'installed in', '$dest')"
