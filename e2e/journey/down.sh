#!/usr/bin/env bash
# Tears the journey down: the nodes and the control plane (e2e/kubelets/down.sh, which
# stops kube-proxy with the control plane), run inside the journey's network namespace,
# then the namespace itself (its bridges, addresses and iptables rules go with it).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if ip netns list | grep -qw "$NETNS"; then
  in_netns bash "$KUBELETS_DIR/down.sh" || log "kubelets/down.sh failed; deleting the namespace anyway"
else
  bash "$KUBELETS_DIR/down.sh" || true
fi
bash "$JOURNEY_DIR/netns.sh" down
