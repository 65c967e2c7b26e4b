#!/usr/bin/env bash
# Stops one component of the local control plane by its PID and starts it again with the same
# command line, for fault tests:  bash e2e/cluster/restart.sh kube-apiserver [PAUSE_SECONDS]
set -euo pipefail
state="${SLUICE_CLUSTER_STATE:-${TMPDIR:-/tmp}/sluice-cluster}"
name="${1:?usage: restart.sh COMPONENT [PAUSE_SECONDS]}"
pause="${2:-0}"
pidfile="$state/pids/$name"
[ -f "$pidfile" ] && [ -f "$pidfile.cmd" ] || { echo "restart.sh: $name does not run from $state" >&2; exit 66; }
pid=$(cat "$pidfile")
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null || true
sleep "$pause"
cd "$state"
# shellcheck disable=SC2046
eval "setsid $(cat "$pidfile.cmd") >> logs/$name.log 2>&1 < /dev/null &"
echo $! > "$pidfile"
if [ "$name" = kube-apiserver ]; then
  port=$(cat ports.api)
  for _ in $(seq 600); do
    [ "$(curl -fsS --cacert certs/ca.crt --cert certs/admin.crt --key certs/admin.key "https://127.0.0.1:$port/readyz" 2>/dev/null)" = ok ] && exit 0
    sleep 0.1
  done
  echo "restart.sh: kube-apiserver is not ready after 60 s; see $state/logs/$name.log" >&2
  exit 70
fi
