#!/usr/bin/env bash
# The one command for the in-cluster journey (issue 11): tandem installed with its Helm
# chart into a cluster of real kubelets of the three behaviours (1.36, 1.28 with the gate
# off, 1.27), with pod networking and kube-proxy, all inside a network namespace of its
# own, then the journey's tests (e2e/journey/tests.sh: install, opt-in, availability,
# node upgrade, helm upgrade, uninstall). Builds what is missing (control plane, kubelets,
# kube-proxy, kubectl, helm: cached in ~/.cache/tandem/bin; tandem's images: dist/),
# always tears everything down, prints `N passed, M failed` and the durations.
# Arguments: names of tests to run (default all, in order; later ones build on earlier).
# Environment: TANDEM_JOURNEY_KEEP=1 leaves the cluster up (and the namespace) for a look;
#   TANDEM_JOURNEY_STATE (default /var/lib/tandem-journey).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$JOURNEY_DIR/../.." && pwd)"
[[ $(id -u) == 0 ]] || die "run as root: network namespaces, containerd, runc, mounts and cgroups need it"

install_missing_packages
command -v iptables >/dev/null && command -v jq >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables jq >/dev/null
}

t0=$(date +%s)
bash "$JOURNEY_DIR/../cluster/build.sh" current
bash "$JOURNEY_DIR/../cluster/build.sh" node-tools
bash "$JOURNEY_DIR/../cluster/build.sh" helm
bash "$KUBELETS_DIR/build.sh"
t1=$(date +%s)
(cd "$ROOT" && nice -n 10 cargo build --release -q -p tandem)
# tandem's release images (the ones the chart names) and a second tag of tandem's image
# for the helm upgrade test (the same binary: what changes is the reference the chart
# rolls to).
bash "$ROOT/packaging/build.sh" >/dev/null
TANDEM_IMAGE_TAG=0.1.0-next bash "$ROOT/packaging/build.sh" --no-compile --out "$ROOT/dist/next" >/dev/null
cp "$ROOT/dist/next/tandem-0.1.0-next.oci.tar" "$ROOT/dist/"
bash "$KUBELETS_DIR/images.sh" build
t2=$(date +%s)

mkdir -p "$JOURNEY_BIN"
ln -sf "$(bin_path kubectl "$K8S_VERSION")" "$JOURNEY_BIN/kubectl"
ln -sf "$(bin_path helm "$HELM_VERSION")" "$JOURNEY_BIN/helm"
ln -sf "$ROOT/target/release/tandem" "$JOURNEY_BIN/tandem"

cleanup() {
  local rc=$?
  if [[ "${TANDEM_JOURNEY_KEEP:-0}" == 1 ]]; then
    log "kept the journey's cluster: nsenter --net=/run/netns/$NETNS env KUBECONFIG=$ADMIN_KUBECONFIG PATH=$JOURNEY_BIN:\$PATH bash"
    log "tear down with: bash e2e/journey/down.sh"
    exit "$rc"
  fi
  bash "$JOURNEY_DIR/down.sh" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$JOURNEY_DIR/down.sh" # whatever a previous run left
bash "$JOURNEY_DIR/netns.sh" up
in_netns bash "$JOURNEY_DIR/up.sh"
t3=$(date +%s)
rc=0
in_netns env PATH="$JOURNEY_BIN:$PATH" KUBECONFIG="$ADMIN_KUBECONFIG" ROOT="$ROOT" \
  bash "$JOURNEY_DIR/tests.sh" "$@" || rc=$?
t4=$(date +%s)
log "journey timings: builds $((t1 - t0))s, tandem+images $((t2 - t1))s, up $((t3 - t2))s, tests $((t4 - t3))s"
exit "$rc"
