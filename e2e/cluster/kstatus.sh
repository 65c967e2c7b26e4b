#!/usr/bin/env bash
# Builds e2e/cluster/kstatus (a small Go program around sigs.k8s.io/cli-utils's kstatus, the
# rules Flux's `wait: true` and health checks apply) into the cluster cache, once, and prints the
# binary's path. The cache key holds the pinned version and a hash of the program's source, so an
# edit builds anew beside the old. Run by build.sh, so that CI builds it beside the Rust build, and
# by the cluster tests' harness, which then finds it built (or builds it, on a cluster named by
# SLUICE_TEST_KUBECONFIG, where up.sh and so build.sh do not run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"
src="$here/kstatus"
grep -q "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION\$" "$src/go.mod" \
  || { echo "kstatus.sh: $src/go.mod does not require sigs.k8s.io/cli-utils $CLI_UTILS_VERSION (versions.sh)" >&2; exit 70; }
key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
out="$CLUSTER_CACHE/kstatus-$CLI_UTILS_VERSION-$key/kstatus"
if [ -x "$out" ]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "kstatus.sh: the go command is missing (Go 1.26 is needed)" >&2; exit 69; }
echo "--- building kstatus (sigs.k8s.io/cli-utils $CLI_UTILS_VERSION)" >&2
mkdir -p "$(dirname "$out")"
# -mod=readonly: the committed go.mod and go.sum are what is built, never rewritten here.
(cd "$src" && CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=readonly" \
  go build -trimpath -ldflags '-s -w' -o "$out.tmp.$$" . >&2)
mv "$out.tmp.$$" "$out"
echo "$out"
