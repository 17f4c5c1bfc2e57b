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

# client_kubeconfig <file> <cert name> <subject>: a client certificate for <subject>
# (CN = user, O = group) signed by the cluster CA, kept in $PKI_DIR/<cert name>.{crt,key},
# and a kubeconfig at <file> that uses it (the kubelets, kube-proxy).
client_kubeconfig() {
  local file="$1" cert="$2" subj="$3"
  (
    cd "$PKI_DIR"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$cert.key" -out "$cert.csr" -subj "$subj" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$cert.ext"
    openssl x509 -req -in "$cert.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
      -out "$cert.crt" -extfile "$cert.ext" 2>/dev/null
    rm -f "$cert.csr" "$cert.ext"
  )
  kubeconfig "$file" "$cert"
}

# install_missing_packages: the Debian packages the real-kubelet suites need (containerd,
# runc, the CNI plugins, a static busybox for the test images, gcc for pause, kubectl for
# the scripts), installed when missing.
install_missing_packages() {
  local missing pair
  missing=()
  for pair in containerd:containerd runc:runc ctr:containerd gcc:gcc openssl:openssl curl:curl kubectl:kubectl; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
  done
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
  { [[ -x /bin/busybox ]] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
  if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
