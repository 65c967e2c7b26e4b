#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache keyed by version, once:
#   kube-apiserver, kube-controller-manager, kube-scheduler  from k8s.io/kubernetes
#   etcd                                                      from go.etcd.io/etcd/server/v3
#   kwok                                                      from sigs.k8s.io/kwok
# and, through kstatus.sh, the cluster tests' kstatus program    from sigs.k8s.io/cli-utils
# Prints the bin directory. A second run with the binaries present does nothing.
# k8s.io/kubernetes requires its staging modules at v0.0.0 with `=> ./staging/...` replaces that a
# consumer does not inherit, so it is built inside a generated wrapper module whose replace lines
# pin each of them to v0.<minor>.<patch>; the list is read from that release's own go.mod.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
# First, as it is small (about 40 s cold, nothing warm), so that CI builds it in the background
# with the rest; its own script, as the harness runs it alone on a cluster it did not start.
bash "$here/kstatus.sh" >/dev/null
bins=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)
have_all() { for b in "${bins[@]}"; do [ -x "$CLUSTER_BIN/$b" ] || return 1; done; }
if have_all; then echo "$CLUSTER_BIN"; exit 0; fi
command -v go >/dev/null || { echo "build.sh: the go command is missing (Go 1.26 is needed)" >&2; exit 69; }

work="$CLUSTER_CACHE/build"
mkdir -p "$CLUSTER_BIN" "$work"
log() { echo "--- $*" >&2; }

# One wrapper module per component, so their dependency graphs do not meet.
wrapper() { # dir module
  rm -rf "$1"; mkdir -p "$1"
  printf 'module %s\n\ngo 1.26.0\n' "$2" > "$1/go.mod"
}

if [ ! -x "$CLUSTER_BIN/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  wrapper "$work/etcd" local.sluice/etcd
  (cd "$work/etcd" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 \
    && go build -trimpath -ldflags '-s -w' -o "$CLUSTER_BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2)
  mv "$CLUSTER_BIN/etcd.tmp" "$CLUSTER_BIN/etcd"
fi

if [ ! -x "$CLUSTER_BIN/kwok" ]; then
  log "building kwok $KWOK_VERSION"
  wrapper "$work/kwok" local.sluice/kwok
  (cd "$work/kwok" && go get -tool "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2 \
    && go build -trimpath -ldflags '-s -w' -o "$CLUSTER_BIN/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok >&2)
  mv "$CLUSTER_BIN/kwok.tmp" "$CLUSTER_BIN/kwok"
fi

if ! { [ -x "$CLUSTER_BIN/kube-apiserver" ] && [ -x "$CLUSTER_BIN/kube-controller-manager" ] \
       && [ -x "$CLUSTER_BIN/kube-scheduler" ]; }; then
  log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION"
  dir="$work/kubernetes"
  wrapper "$dir" local.sluice/kubernetes
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -f "$gomod" ] || { echo "build.sh: no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 70; }
  staging_version="v0.${K8S_VERSION#v1.}"
  # `k8s.io/api => ./staging/src/k8s.io/api` becomes `k8s.io/api => k8s.io/api v0.36.3`.
  replaces=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*$#\1#p' "$gomod")
  [ -n "$replaces" ] || { echo "build.sh: no staging replaces found in $gomod" >&2; exit 70; }
  {
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in $replaces; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >> "$dir/go.mod"
  log "$(echo "$replaces" | wc -l) staging modules pinned to $staging_version"
  cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler)
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$dir" && for c in "${cmds[@]}"; do go get -tool "$c@$K8S_VERSION" >&2; done \
    && mkdir -p out && go build -trimpath -ldflags "$ldflags" -o out/ "${cmds[@]}" >&2)
  for c in "${cmds[@]}"; do mv "$dir/out/${c##*/}" "$CLUSTER_BIN/"; done
fi
have_all || { echo "build.sh: some binaries are missing from $CLUSTER_BIN" >&2; exit 70; }
echo "$CLUSTER_BIN"
