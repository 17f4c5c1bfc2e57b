#!/usr/bin/env bash
# Restarts only kube-apiserver of a running e2e control plane, with other feature gates
# and/or another version's binary; everything else keeps running.
# Usage: restart-apiserver.sh [--version vX.Y.Z] [--feature-gates A=false,B=true]
# Without arguments it goes back to the current version with no extra gates.
# A version other than the current one is built first if its binary is missing, and keeps
# its objects under its own etcd prefix (it starts from an empty store); while it runs,
# controller-manager, scheduler and kwok are stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
take_lock

ver="$K8S_VERSION"
gates=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version) ver="${2:?}"; shift 2 ;;
    --version=*) ver="${1#*=}"; shift ;;
    --feature-gates) gates="${2-}"; shift 2 ;;
    --feature-gates=*) gates="${1#*=}"; shift ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ -f "$PKI_DIR/ca.crt" ]] || die "no control plane in $STATE_DIR: run e2e/cluster/up.sh"
[[ -x "$(bin_path kube-apiserver "$ver")" ]] || bash "$E2E_DIR/cluster/build.sh" apiserver "$ver"
if [[ "$ver" != "$K8S_VERSION" ]]; then
  # The current release's controller-manager, scheduler and kwok must not run against an
  # older API server (version skew; their watches would back off for minutes): they
  # stop here and come back with the current release.
  stop_procs kwok kube-scheduler kube-controller-manager
fi
stop_proc kube-apiserver
start_apiserver "$ver" "$gates"
if [[ "$ver" == "$K8S_VERSION" ]] && ! pid_of kube-controller-manager >/dev/null; then
  start_controllers
fi
