#!/usr/bin/env bash
# The demo in one command on a fresh Debian machine with a Rust toolchain:
#   bash e2e/demo.sh [good|errors|latency] [--cluster]
# installs Prometheus (Debian's package) if it is missing, builds sluice, and runs a whole release
# on 127.0.0.1 with `sluice demo`, shown live; the report is target/sluice-demo/report.html.
# With --cluster the release runs on a real Kubernetes API server: the local control plane of
# e2e/cluster/ (built from Go modules the first time, about 20 minutes here), or the cluster
# KUBECONFIG names.
# The exit code is the verdict's, as for `sluice analyse`: 0 promoted, 1 rolled back,
# 2 inconclusive.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=good
flags=()
for arg in "$@"; do
  case "$arg" in
    good|errors|latency) scenario="$arg" ;;
    --cluster) flags+=(--cluster) ;;
    *) echo "usage: bash e2e/demo.sh [good|errors|latency] [--cluster]" >&2; exit 64 ;;
  esac
done

if ! command -v prometheus >/dev/null 2>&1; then
  echo "--- installing Prometheus (Debian package)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

echo "--- building sluice (cargo build --release)"
cargo build --release --quiet

if [ "${#flags[@]}" -gt 0 ] && [ -z "${KUBECONFIG:-}" ]; then
  echo "--- building the local control plane if needed (e2e/cluster/build.sh)"
  bash e2e/cluster/build.sh >/dev/null
fi
# Where cargo put it: a CARGO_TARGET_DIR from the environment wins over ./target.
exec "${CARGO_TARGET_DIR:-target}/release/sluice" demo --scenario "$scenario" "${flags[@]}"
