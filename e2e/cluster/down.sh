#!/usr/bin/env bash
# Stops every process of the e2e control plane that the state dir recorded (by pid) and
# removes the state dir. TANDEM_E2E_KEEP_STATE=1 keeps it (logs, certificates) for a look.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
take_lock

stop_procs kube-proxy kwok kube-scheduler kube-controller-manager kube-apiserver
stop_procs etcd
if [[ "${TANDEM_E2E_KEEP_STATE:-0}" == 1 ]]; then
  log "kept $STATE_DIR"
elif [[ -d "$STATE_DIR" ]]; then
  rm -rf "$STATE_DIR"
  log "removed $STATE_DIR"
fi
