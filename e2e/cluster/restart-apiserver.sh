#!/usr/bin/env bash
# Restarts only kube-apiserver of a running e2e control plane, with other feature gates
# and/or another version's binary; everything else keeps running.
# Usage: restart-apiserver.sh [--version vX.Y.Z] [--feature-gates A=false,B=true]
# Without arguments it goes back to the current version with no extra gates.
# A version other than the current one is built first if its binary is missing, and keeps
# its objects under its own etcd prefix (it starts from an empty store). On a change of
# version, controller-manager, scheduler and kwok (current release) are restarted too.
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
running="$(sed -n 's/^TANDEM_E2E_APISERVER_VERSION=//p' "$STATE_DIR/cluster.env" 2>/dev/null || true)"
if [[ "$ver" != "$running" ]]; then
  # Another version: controller-manager, scheduler and kwok restart with it, so that their
  # informers start afresh against the new server (and its separate store) instead of
  # backing off for minutes after the outage.
  stop_procs kwok kube-scheduler kube-controller-manager
fi
stop_proc kube-apiserver
start_apiserver "$ver" "$gates"
if ! pid_of kube-controller-manager >/dev/null; then
  stop_procs kwok kube-scheduler
  start_controllers
fi
