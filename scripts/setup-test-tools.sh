#!/usr/bin/env bash
# Installs, from PyPI and pinned, the real third-party tools some tests point at a running
# cluster: OpenAI's Python SDK (tests/openai_sdk.rs), an OpenAPI 3.1 validator and a JSON
# Schema validator (tests/ecosystem.rs checks /openapi.json and real answers against it),
# Prometheus' own text-format parser (/metrics), kubernetes-validate (deploy/ manifests
# against the Kubernetes schemas, offline) and Triton's HTTP client (tests/kserve.rs speaks
# the KServe v2 protocol with it). DEST defaults to .cache/test-tools.
set -euo pipefail
dest="${1:-$(dirname "$0")/../.cache/test-tools}"
pins="openai==3.57.0 openapi-spec-validator==0.9.0 jsonschema==4.26.0 prometheus-client==0.26.0 kubernetes-validate==1.37.0 tritonclient[http]==2.73.0"
stamp="$dest/.pins"
if [ -x "$dest/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pins" ]; then
  echo "test tools already in $dest"; exit 0
fi
py=$(command -v python3 || command -v python) || { echo "setup-test-tools: python3 is needed" >&2; exit 1; }
"$py" -m venv "$dest"
# shellcheck disable=SC2086
"$dest/bin/pip" install --quiet --disable-pip-version-check $pins
"$dest/bin/python" -c "import openai, openapi_spec_validator, jsonschema, prometheus_client, kubernetes_validate, tritonclient.http; print('test tools installed in $dest: openai', openai.__version__)"
echo "$pins" > "$stamp"
