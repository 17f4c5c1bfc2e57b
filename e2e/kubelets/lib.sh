# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts
# Shared settings for e2e/kubelets (sourced, not run): state dir, ports, node names,
# and the control plane's settings (e2e/cluster/lib.sh, pointed at our own state dir and
# port base so that it never collides with another developer's running cluster).
KUBELETS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KSTATE="${TANDEM_KUBELETS_STATE:-/var/lib/tandem-kubelets}"
export TANDEM_E2E_STATE="${TANDEM_E2E_STATE:-$KSTATE/cluster}"
export TANDEM_E2E_PORT_BASE="${TANDEM_E2E_PORT_BASE:-24400}"
source "$KUBELETS_DIR/../cluster/lib.sh"
source "$KUBELETS_DIR/versions.sh"

# One node per behaviour: name, kubelet version, kubelet port (healthz = port + 1).
NODES=(k-new k-128 k-old)
node_version() {
  # A node upgraded in place (e2e/journey) runs the version its state dir names.
  if [[ -f "$KSTATE/$1/kubelet-version" ]]; then cat "$KSTATE/$1/kubelet-version"; return; fi
  case "$1" in
    k-new) echo "$KUBELET_NEW" ;; k-128) echo "$KUBELET_128" ;; k-old) echo "$KUBELET_OLD" ;;
    *) die "unknown node $1" ;;
  esac
}
node_port() {
  case "$1" in
    k-new) echo $((PORT_BASE + 10)) ;; k-128) echo $((PORT_BASE + 12)) ;; k-old) echo $((PORT_BASE + 14)) ;;
  esac
}
node_dir() { printf '%s/%s' "$KSTATE" "$1"; }
node_sock() { printf '%s/containerd.sock' "$(node_dir "$1")"; }
IMAGES_DIR="$KSTATE/images"
PAUSE_IMAGE="registry.k8s.io/pause:3.9"

# Pod network (the in-cluster journey, e2e/journey; off for run.sh's host-network pods):
# each node has an address of its own on the journey's network namespace and a CNI
# bridge with a /24 of pods behind a gateway, routed by that namespace's kernel.
POD_NETWORK="${TANDEM_KUBELETS_POD_NETWORK:-0}"
node_index() {
  case "$1" in k-new) echo 11 ;; k-128) echo 12 ;; k-old) echo 13 ;; *) die "unknown node $1" ;; esac
}
node_ip() { if [[ $POD_NETWORK == 1 ]]; then echo "10.200.0.$(node_index "$1")"; else echo 127.0.0.1; fi; }
node_pod_cidr() { echo "10.244.$(node_index "$1").0/24"; }
