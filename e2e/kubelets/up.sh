#!/usr/bin/env bash
# Brings up the kubelet e2e environment: the control plane of e2e/cluster (own state dir
# $KSTATE/cluster and port base 24400, so another developer's cluster is untouched), then
# one node per kubelet behaviour (node.sh in its own mount namespace: containerd +
# kubelet), each with a client certificate for system:node:<name> signed by the cluster
# CA, and waits until every node is Ready. Kubelets must have been built (build.sh) and
# the images too (images.sh build). Nodes to start: $TANDEM_KUBELET_NODES (default all).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ $(id -u) == 0 ]] || die "needs root (containerd, mounts, cgroups)"
for t in containerd runc ctr unshare kubectl; do command -v "$t" >/dev/null || die "$t is missing (run.sh installs it)"; done

read -r -a WANT <<<"${TANDEM_KUBELET_NODES:-${NODES[*]}}"
for n in "${WANT[@]}"; do
  [[ -x "$(bin_path kubelet "$(node_version "$n")")" ]] || die "kubelet $(node_version "$n") is not built: bash e2e/kubelets/build.sh"
done
[[ -f "$IMAGES_DIR/pause.tar" ]] || bash "$KUBELETS_DIR/images.sh" build

bash "$KUBELETS_DIR/../cluster/up.sh"
export KUBECONFIG="$ADMIN_KUBECONFIG"

start_node() {
  local n="$1" d port
  d="$(node_dir "$n")"; port="$(node_port "$n")"
  for p in "$port" "$((port + 1))"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is taken"; fi
  done
  mkdir -p "$d"
  client_kubeconfig "$d/kubelet.kubeconfig" "node-$n" "/O=system:nodes/CN=system:node:$n"
  log "starting node $n (kubelet $(node_version "$n"), port $port)"
  TANDEM_HOST_MNTNS="$(readlink /proc/self/ns/mnt)" setsid unshare --mount --propagation private bash "$KUBELETS_DIR/node.sh" "$n" >>"$d/node.log" 2>&1 </dev/null &
  echo $! >"$d/node.pid"
}

node_ready() {
  [[ "$(kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

t0=$(date +%s)
for n in "${WANT[@]}"; do start_node "$n"; done
for n in "${WANT[@]}"; do
  ok=0
  for _ in $(seq 1 240); do
    if node_ready "$n"; then ok=1; break; fi
    kill -0 "$(cat "$(node_dir "$n")/node.pid")" 2>/dev/null || break
    sleep 0.5
  done
  if [[ $ok != 1 ]]; then
    log "node $n not Ready; last lines of its log:"
    tail -n 40 "$(node_dir "$n")/node.log" >&2
    die "node $n did not become Ready"
  fi
  log "node $n Ready ($(kubectl get node "$n" -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}'))"
done
cat >"$KSTATE/kubelets.env" <<ENV
TANDEM_KUBELETS_STATE=$KSTATE
TANDEM_KUBELETS_KUBECONFIG=$ADMIN_KUBECONFIG
TANDEM_KUBELETS_SERVER=$SERVER_URL
TANDEM_KUBELETS_NODES=${WANT[*]}
ENV
log "nodes up in $(($(date +%s) - t0))s: KUBECONFIG=$ADMIN_KUBECONFIG"
