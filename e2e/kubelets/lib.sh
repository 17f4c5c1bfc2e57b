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
