#!/usr/bin/env bash
# Tears the kubelet e2e environment down: for each node, kills and deletes every container
# task in its containerd (so no container, shim or mount outlives it), stops its kubelet
# and containerd (the pids up.sh/node.sh recorded), then whatever process is still left
# in that node's own mount namespace (only processes this environment started live
# there), and removes empty pod cgroups; then the control plane (e2e/cluster/down.sh with
# our state dir). TANDEM_KUBELETS_KEEP_STATE=1 keeps $KSTATE (logs) for a look.
# Usage: down.sh | down.sh --node <name> (that node only, its state kept)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

alive() { [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; }
wait_gone() { # wait_gone <pid> <seconds>
  local i
  for ((i = 0; i < $2 * 10; i++)); do alive "$1" || return 0; sleep 0.1; done
  return 1
}

stop_node() {
  local n="$1" d sock pid cpid ns p
  d="$(node_dir "$n")"; sock="$(node_sock "$n")"
  [[ -d "$d" ]] || return 0
  pid="$(cat "$d/node.pid" 2>/dev/null || true)"
  cpid="$(cat "$d/containerd.pid" 2>/dev/null || true)"
  ns="$(cat "$d/mntns" 2>/dev/null || true)"
  # The kubelet first, so that it does not restart what we kill next.
  if alive "$pid" && [[ -n "$ns" && "$ns" != "$HOST_NS" && "$(readlink "/proc/$pid/ns/mnt")" == "$ns" ]]; then
    log "stopping node $n kubelet (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
  fi
  local netns=()
  if alive "$cpid" && [[ -S "$sock" ]]; then
    local t
    # Pods with a network of their own (the journey's pod-network mode): containerd made
    # a named network namespace for each sandbox (/var/run/netns/cni-…); killing the
    # tasks leaves them, so note them to delete once the tasks are gone.
    for t in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      mapfile -t -O "${#netns[@]}" netns < <(ctr -a "$sock" -n k8s.io containers info "$t" 2>/dev/null |
        grep -o '"/var/run/netns/cni-[0-9a-f-]*"' | tr -d '"' | sort -u)
    done
    for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$sock" -n k8s.io tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
    sleep 0.5
    for t in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
      ctr -a "$sock" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
    done
    for t in $(ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      ctr -a "$sock" -n k8s.io containers delete "$t" >/dev/null 2>&1 || true
      # cgroupsPerQOS is off: runc's cgroup is /k8s.io/<id> in each hierarchy.
      rmdir /sys/fs/cgroup/*/k8s.io/"$t" 2>/dev/null || true
    done
  fi
  for p in $(printf '%s\n' "${netns[@]}" | sort -u); do
    ip netns delete "${p##*/}" 2>/dev/null || { umount "$p" 2>/dev/null; rm -f "$p"; } || true
  done
  [[ ${#netns[@]} == 0 ]] || log "node $n: deleted its pods' network namespaces"
  if alive "$cpid" && [[ -n "$ns" && "$ns" != "$HOST_NS" && "$(readlink "/proc/$cpid/ns/mnt")" == "$ns" ]]; then
    log "stopping node $n containerd (pid $cpid)"
    kill -TERM "$cpid" 2>/dev/null || true
    wait_gone "$cpid" 10 || kill -KILL "$cpid" 2>/dev/null || true
  fi
  # Anything still in the node's mount namespace (containerd shims) was started by us;
  # never the host's namespace (or ours): then the recorded value is wrong, and we stop.
  if [[ -n "$ns" && "$ns" != "$HOST_NS" && "$ns" != "$SELF_NS" ]]; then
    for p in /proc/[0-9]*; do
      [[ "$(readlink "$p/ns/mnt" 2>/dev/null)" == "$ns" ]] || continue
      # Ours name our state dir (kubelet, containerd, containerd-shim -address ...).
      grep -qaF -- "$KSTATE/" "$p/cmdline" 2>/dev/null || continue
      log "node $n: killing leftover pid ${p#/proc/} ($(tr '\0' ' ' <"$p/cmdline" | cut -c1-80))"
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    done
  elif [[ -n "$ns" ]]; then
    log "node $n: recorded mount namespace $ns is the host's: not killing by namespace"
  fi
  rm -f "$d/node.pid" "$d/containerd.pid"
}

HOST_NS="$(readlink /proc/$$/ns/mnt)" # the namespace we run in: the host's
SELF_NS="$(readlink /proc/self/ns/mnt)"
[[ -n "$HOST_NS" && -n "$SELF_NS" ]] || die "cannot read our own mount namespace"
# --node <name>: stop that node only (its containers die with it, as in a node's
# restart), keeping its state dir and the control plane: the journey's in-place upgrade.
if [[ "${1:-}" == --node ]]; then
  node_version "${2:?--node needs a node name}" >/dev/null
  stop_node "$2"
  exit 0
fi
for n in "${NODES[@]}"; do stop_node "$n"; done
bash "$KUBELETS_DIR/../cluster/down.sh" || true
if [[ "${TANDEM_KUBELETS_KEEP_STATE:-0}" == 1 ]]; then
  log "kept $KSTATE"
else
  for n in "${NODES[@]}"; do rm -rf "$(node_dir "$n")"; done
  log "removed node state under $KSTATE"
fi
