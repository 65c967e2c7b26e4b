#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 and prints the path of its kubeconfig:
#   etcd, kube-apiserver (RBAC, generated certificates), kube-controller-manager, kube-scheduler,
#   kwok with fake Nodes (pods become Running and Ready without a kubelet), and the Gateway API
#   standard CRDs of the sigs.k8s.io/gateway-api module.
# Builds the binaries first if the cache lacks them (build.sh). Idempotent: while one runs, a
# second up.sh says so and prints the same kubeconfig. Stop it with down.sh.
#
# Environment:
#   SLUICE_CLUSTER_STATE  state folder (default ${TMPDIR:-/tmp}/sluice-cluster): certificates,
#                         etcd data, logs, PIDs, kubeconfig
#   SLUICE_CLUSTER_NODES  fake Nodes to create (default 1)
#   SLUICE_CLUSTER_PODS   pods per fake Node (default 1100)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.sh
source "$here/versions.sh"
state="${SLUICE_CLUSTER_STATE:-${TMPDIR:-/tmp}/sluice-cluster}"
nodes="${SLUICE_CLUSTER_NODES:-1}"
pods_per_node="${SLUICE_CLUSTER_PODS:-1100}"
kubeconfig="$state/kubeconfig"

alive() { [ -f "$state/pids/$1" ] && kill -0 "$(cat "$state/pids/$1")" 2>/dev/null; }
if alive kube-apiserver; then
  echo "up.sh: a local control plane already runs from $state (stop it with down.sh)" >&2
  echo "$kubeconfig"
  exit 0
fi
if [ -d "$state/pids" ]; then
  echo "up.sh: clearing what a stopped control plane left in $state" >&2
  bash "$here/down.sh" >/dev/null
fi

bin="$(bash "$here/build.sh")"
tools="$(bash "$here/tools.sh")"
kubectl="$tools/kubectl"
command -v openssl >/dev/null || { echo "up.sh: openssl is missing (apt-get install openssl)" >&2; exit 69; }

mkdir -p "$state"/{pids,logs,certs,etcd}
cd "$state"
log() { echo "--- $*" >&2; }
fail() {
  echo "up.sh: $1; its log: $state/logs/$2.log" >&2
  tail -n 20 "$state/logs/$2.log" >&2 || true
  bash "$here/down.sh" >/dev/null 2>&1 || true
  exit 70
}

# Free ports, chosen by the kernel; a tiny race with other programs is accepted.
read -r etcd_port peer_port api_port kwok_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)
echo "$api_port" > ports.api

# --- certificates: one CA; the API server's serving cert; client certs for the admin
# (system:masters) and the components; the service-account signing key.
log "certificates"
c=certs
ossl() { openssl "$@" >/dev/null 2>&1; }
ossl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice-local-ca" \
  -keyout $c/ca.key -out $c/ca.crt
# X.509 v3 (extensions given) for every certificate: rustls, which kube-rs uses, refuses v1.
echo "extendedKeyUsage = clientAuth" > $c/client.ext
client_cert() { # name CN O
  ossl req -newkey rsa:2048 -nodes -subj "/CN=$2${3:+/O=$3}" -keyout "$c/$1.key" -out "$c/$1.csr"
  ossl x509 -req -in "$c/$1.csr" -CA $c/ca.crt -CAkey $c/ca.key -CAcreateserial -days 3650 \
    -extfile $c/client.ext -out "$c/$1.crt"
}
cat > $c/server.ext <<'EOF'
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, IP:10.96.0.1
extendedKeyUsage = serverAuth
EOF
ossl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout $c/server.key -out $c/server.csr
ossl x509 -req -in $c/server.csr -CA $c/ca.crt -CAkey $c/ca.key -CAcreateserial -days 3650 \
  -extfile $c/server.ext -out $c/server.crt
client_cert admin sluice-admin system:masters
client_cert controller-manager system:kube-controller-manager
client_cert scheduler system:kube-scheduler
client_cert kwok kwok system:masters
ossl genrsa -out $c/sa.key 2048
ossl rsa -in $c/sa.key -pubout -out $c/sa.pub

write_kubeconfig() { # file cert-name
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $state/certs/ca.crt
users:
- name: $2
  user:
    client-certificate: $state/certs/$2.crt
    client-key: $state/certs/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}
write_kubeconfig "$kubeconfig.partial" admin
write_kubeconfig controller-manager.kubeconfig controller-manager
write_kubeconfig scheduler.kubeconfig scheduler
write_kubeconfig kwok.kubeconfig kwok

start() { # name command...
  local name=$1; shift
  # setsid: the processes outlive the shell that started them, and a Ctrl-C there.
  setsid "$@" > "logs/$name.log" 2>&1 < /dev/null &
  echo $! > "pids/$name"
  # The command line, so a test can stop one component and start it again as it was.
  printf '%q ' "$@" > "pids/$name.cmd"
}

log "etcd $ETCD_VERSION on 127.0.0.1:$etcd_port"
start etcd "$bin/etcd" --name local --data-dir "$state/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "local=http://127.0.0.1:$peer_port" --log-level warn
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
  alive etcd || fail "etcd exited" etcd
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 || fail "etcd is not healthy" etcd

log "kube-apiserver $K8S_VERSION on https://127.0.0.1:$api_port"
start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$state/certs/server.crt" --tls-private-key-file "$state/certs/server.key" \
  --client-ca-file "$state/certs/ca.crt" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$state/certs/sa.pub" \
  --service-account-signing-key-file "$state/certs/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --endpoint-reconciler-type none \
  --allow-privileged=true --profiling=false --v=0
curl_api() { curl -fsS --cacert certs/ca.crt --cert certs/admin.crt --key certs/admin.key "https://127.0.0.1:$api_port$1"; }
for _ in $(seq 600); do
  [ "$(curl_api /readyz 2>/dev/null)" = ok ] && break
  alive kube-apiserver || fail "kube-apiserver exited" kube-apiserver
  sleep 0.1
done
[ "$(curl_api /readyz 2>/dev/null)" = ok ] || fail "kube-apiserver is not ready after 60 s" kube-apiserver

log "kube-controller-manager, kube-scheduler"
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$state/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$state/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$state/controller-manager.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
  --service-account-private-key-file "$state/certs/sa.key" --root-ca-file "$state/certs/ca.crt" \
  --use-service-account-credentials=true \
  --controllers '*,-nodeipam,-cloud-node-lifecycle,-service,-route,-ttl,-bootstrapsigner,-tokencleaner' \
  --concurrent-deployment-syncs 20 --concurrent-replicaset-syncs 20 \
  --kube-api-qps 500 --kube-api-burst 1000 --v=0
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$state/scheduler.kubeconfig" \
  --authentication-kubeconfig "$state/scheduler.kubeconfig" \
  --authorization-kubeconfig "$state/scheduler.kubeconfig" \
  --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
  --kube-api-qps 500 --kube-api-burst 1000 --v=0

# kwok v0.8 has no built-in stages: the node and pod lifecycles come from its module.
module_dir() { # module@version: its folder in the Go module cache, downloaded if missing
  (cd / && GOFLAGS=-mod=mod go mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
stages="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage"
{
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$stages/$f"; echo "---"
  done
} > kwok-stages.yaml
log "kwok $KWOK_VERSION"
start kwok "$bin/kwok" --kubeconfig "$state/kwok.kubeconfig" --config "$state/kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.1/16 --node-ip 10.0.0.1 --server-address "127.0.0.1:$kwok_port" \
  --node-lease-duration-seconds 40

export KUBECONFIG="$kubeconfig.partial"
for i in $(seq "$nodes"); do
  cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, type: kwok}
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "$pods_per_node"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "$pods_per_node"}
EOF
  echo "---"
done > nodes.yaml
"$kubectl" apply -f nodes.yaml >/dev/null || fail "the fake Nodes were refused" kube-apiserver

gateway="$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")/config/crd/standard"
log "Gateway API $GATEWAY_API_VERSION standard CRDs"
# The safe-upgrades ValidatingAdmissionPolicy is not a CRD: left out.
for f in "$gateway"/gateway.networking.k8s.io_*.yaml; do
  case "$f" in *_vap_*) continue ;; esac
  "$kubectl" apply --server-side -f "$f" >/dev/null || fail "a Gateway API CRD was refused ($f)" kube-apiserver
done
"$kubectl" wait --for condition=Established --timeout 60s crd/httproutes.gateway.networking.k8s.io >/dev/null
for _ in $(seq 300); do
  ready=$("$kubectl" get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True || true)
  [ "$ready" -ge "$nodes" ] && break
  alive kwok || fail "kwok exited" kwok
  sleep 0.2
done
[ "$ready" -ge "$nodes" ] || fail "the fake Nodes are not Ready" kwok
# The default ServiceAccount, made by the controller-manager, is needed before pods can be created.
for _ in $(seq 300); do
  "$kubectl" get serviceaccount default -n default >/dev/null 2>&1 && break
  sleep 0.2
done
mv "$kubeconfig.partial" "$kubeconfig"
log "ready: $nodes fake Node(s); stop with: bash e2e/cluster/down.sh"
echo "$kubeconfig"
