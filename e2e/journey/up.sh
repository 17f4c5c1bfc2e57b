#!/usr/bin/env bash
# Brings the journey's cluster up, run inside its network namespace (run.sh does
# `nsenter --net=/run/netns/tandem-journey bash up.sh`): the control plane and the three kubelets of
# e2e/kubelets in pod-network mode, tandem's release images (dist/, packaging/build.sh)
# imported into every node's containerd, and kube-proxy (iptables mode) so that Service
# addresses route to pods: the API server reaches the webhook through its Service.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$JOURNEY_DIR/../.." && pwd)"
[[ "$(ip netns identify 2>/dev/null)" == "$NETNS" ]] ||
  die "run inside the journey's network namespace: nsenter --net=/run/netns/$NETNS bash $0 (run.sh does)"

DIST="${TANDEM_JOURNEY_DIST:-$ROOT/dist}"
shopt -s nullglob
tars=("$DIST"/*.oci.tar)
shopt -u nullglob
[[ ${#tars[@]} -ge 2 ]] || die "no images in $DIST: run packaging/build.sh"
export TANDEM_KUBELETS_EXTRA_IMAGES="${tars[*]}"
bash "$KUBELETS_DIR/up.sh"
export KUBECONFIG="$ADMIN_KUBECONFIG"

# --- kube-proxy: one for the whole namespace (every node's pods and the API server share
# its kernel, so one set of rules serves them all), named after k-new.
KP="$KSTATE/kube-proxy"
mkdir -p "$KP"
client_kubeconfig "$KP/kubeconfig" kube-proxy "/CN=system:kube-proxy"
cat >"$KP/config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: "$KP/kubeconfig"}
hostnameOverride: k-new
clusterCIDR: 10.244.0.0/16
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:$((KUBE_PROXY_PORT + 1))
metricsBindAddress: 127.0.0.1:$KUBE_PROXY_PORT
# Every Service packet is masqueraded: replies from a pod on another node's bridge come
# back through this kernel whatever the source was.
iptables: {masqueradeAll: true, localhostNodePorts: false}
# A network namespace cannot raise the host's conntrack table size or its timeouts
# (kind does the same): leave them as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
bin="$(bin_path kube-proxy "$K8S_VERSION")"
[[ -x "$bin" ]] || die "$bin is missing: bash e2e/cluster/build.sh node-tools"
start_proc kube-proxy "$bin" --config="$KP/config.yaml" --v="${TANDEM_E2E_VERBOSITY:-1}"
wait_for kube-proxy 60 curl -sf "http://127.0.0.1:$((KUBE_PROXY_PORT + 1))/healthz"
# The `kubernetes` Service routes (10.96.0.1:443 → the API server's advertised address).
wait_for "kube-proxy rules for the kubernetes Service" 60 \
  bash -c 'iptables -t nat -S KUBE-SERVICES 2>/dev/null | grep -q 10.96.0.1/32'
wait_for "the kubernetes Service through kube-proxy" 30 \
  curl -sk -o /dev/null "https://10.96.0.1:443/healthz"
log "journey cluster up: KUBECONFIG=$KUBECONFIG (inside ip netns $NETNS)"
