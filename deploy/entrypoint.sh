#!/bin/sh
# Starts `mlmf node` in a StatefulSet pod: node id = pod name, advertised as its stable DNS
# name under the headless Service; pod 0 starts the cluster, the others join pod 0.
#   MLMF_SERVICE   the headless Service (default mlmf)
#   MLMF_NAMESPACE the namespace (default: the pod's own, from the service account)
#   MLMF_PORT      the port (default 7070)
# Extra arguments go to `mlmf node` (the TLS files, say).
set -eu
service="${MLMF_SERVICE:-mlmf}"
port="${MLMF_PORT:-7070}"
namespace="${MLMF_NAMESPACE:-$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace 2>/dev/null || echo default)}"
pod="$(hostname)"
ordinal="${pod##*-}"
domain="${service}.${namespace}.svc.cluster.local"
seed="${pod%-*}-0.${domain}:${port}"
set -- node --config /etc/mlmf/node.toml --listen "0.0.0.0:${port}" \
  --advertise "${pod}.${domain}:${port}" --node-id "${pod}" \
  --cluster-key-file /etc/mlmf/key/cluster-key "$@"
if [ "${ordinal}" != "0" ]; then
  set -- "$@" --join "${seed}"
fi
exec /usr/local/bin/mlmf "$@"
