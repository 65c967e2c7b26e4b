# The pinned versions of the local control plane, sourced by build.sh, up.sh and the tests' harness.
# The cache key is made of them, so changing one builds a new set beside the old.
K8S_VERSION=v1.36.3        # kube-apiserver, kube-controller-manager, kube-scheduler (k8s.io/kubernetes)
ETCD_VERSION=v3.6.16       # go.etcd.io/etcd/server/v3
KWOK_VERSION=v0.8.0        # sigs.k8s.io/kwok
GATEWAY_API_VERSION=v1.6.3 # sigs.k8s.io/gateway-api, its standard CRDs
# The meshes' CRDs the cluster tests install (tests/support/cluster.rs, not up.sh): Istio's
# VirtualService and DestinationRule, SMI's TrafficSplit.
ISTIO_API_VERSION=v1.32.0  # istio.io/api, kubernetes/customresourcedefinitions.gen.yaml
SMI_SDK_VERSION=v0.5.0     # github.com/servicemeshinterface/smi-sdk-go, crds/split.yaml
# kstatus, the status rules of Flux's health checks, built into a small program (kstatus.sh) that
# the cluster tests ask about each Canary; kstatus/go.mod requires the same version.
CLI_UTILS_VERSION=v0.37.2  # sigs.k8s.io/cli-utils, pkg/kstatus/status
CLUSTER_CACHE="${SLUICE_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/cluster}"
CLUSTER_BIN="$CLUSTER_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"
