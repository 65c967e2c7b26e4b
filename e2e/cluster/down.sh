#!/usr/bin/env bash
# Stops every process up.sh started, by the PIDs it recorded (SIGTERM, then SIGKILL after 10 s),
# and removes the state folder. Idempotent: with nothing running it only cleans up.
set -euo pipefail
state="${SLUICE_CLUSTER_STATE:-${TMPDIR:-/tmp}/sluice-cluster}"
if [ ! -d "$state" ]; then
  echo "down.sh: nothing runs from $state" >&2
  exit 0
fi
# Reverse order of start: the API server's clients first, etcd last.
order=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
pids=()
for name in "${order[@]}"; do
  f="$state/pids/$name"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
  fi
done
for _ in $(seq 100); do
  left=()
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
  [ "${#left[@]}" -eq 0 ] && break
  sleep 0.1
done
for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
rm -rf "$state"
echo "down.sh: stopped ${#pids[@]} process(es) and removed $state" >&2
