#!/usr/bin/env bash
# The one command for tandem's real-kubelet tests (issue 7): installs the Debian packages
# they need when missing (containerd, runc, containernetworking-plugins, busybox-static,
# gcc), builds the three kubelets from source (cached in ~/.cache/tandem/bin), tandem and a
# static tandem-shim, the images (no Docker), brings up the control plane of e2e/cluster
# (own state dir and ports) and one containerd + kubelet per behaviour, runs
# e2e/tests/kubelets/, and always tears everything down. Prints the durations.
# Extra arguments go to the test binary (e.g. a test name filter).
# Environment: TANDEM_KUBELETS_STATE (default /var/lib/tandem-kubelets),
# TANDEM_KUBELETS_KEEP_STATE=1 (keep logs), TANDEM_KUBELET_NODES="k-new k-old" (a subset),
# TANDEM_KUBELETS_STATIC_CLI=1 (also build a static `tandem` into tandem's image).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$KUBELETS_DIR/../.." && pwd)"
[[ $(id -u) == 0 ]] || die "run as root: containerd, runc, mounts and cgroups need it"

install_missing_packages

t0=$(date +%s)
bash "$KUBELETS_DIR/../cluster/build.sh" current
bash "$KUBELETS_DIR/build.sh"
t1=$(date +%s)
(cd "$ROOT" && nice -n 10 cargo build --release -q -p tandem && bash crates/shim/build-static.sh >/dev/null)
if [[ "${TANDEM_KUBELETS_STATIC_CLI:-0}" == 1 ]]; then
  # tandem itself, statically linked, for tandem's image (the pods only need the shim).
  (cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$ROOT/target/static-cli" \
    nice -n 10 cargo build --release -q -p tandem --target x86_64-unknown-linux-gnu)
fi
bash "$KUBELETS_DIR/images.sh" build
t2=$(date +%s)

cleanup() {
  local rc=$?
  if [[ $rc != 0 ]]; then
    for f in "$KSTATE"/k-*/node.log "$KSTATE"/k-*/containerd.log; do
      [[ -f "$f" ]] || continue
      echo "----- last lines of $f" >&2
      tail -n 30 "$f" >&2 || true
    done
  fi
  bash "$KUBELETS_DIR/down.sh" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$KSTATE/pods"
bash "$KUBELETS_DIR/up.sh"
t3=$(date +%s)
cd "$ROOT"
TANDEM_KUBELETS_E2E=1 TANDEM_KUBELETS_STATIC_CLI="${TANDEM_KUBELETS_STATIC_CLI:-0}" TANDEM_BIN="$ROOT/target/release/tandem" TANDEM_KUBELETS_STATE="$KSTATE" \
  cargo test -p tandem-e2e --features real-kubelets --test kubelets -- --ignored --test-threads="${TANDEM_KUBELETS_TEST_THREADS:-3}" "$@"
t4=$(date +%s)
log "kubelet e2e timings: build $((t1 - t0))s, tandem+shim+images $((t2 - t1))s, up $((t3 - t2))s, tests (incl. compile) $((t4 - t3))s"
