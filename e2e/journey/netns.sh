#!/usr/bin/env bash
# Creates (up) or deletes (down) the journey's network namespace: loopback, a bridge tj0
# with 10.200.0.1 (the API server's advertised address) and 10.200.0.11-13 (the nodes),
# forwarding on (the kernel routes between the nodes' pod bridges), and bridged traffic
# through iptables (kube-proxy's rules also see pod-to-pod traffic on one bridge).
# Nothing leaves the namespace: it has no link to the host's network.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-up}" in
  up)
    if ip netns list | grep -qw "$NETNS"; then log "network namespace $NETNS exists"; exit 0; fi
    ip netns add "$NETNS"
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" link add "$HOST_IF" type bridge
    for a in 10.200.0.1 10.200.0.11 10.200.0.12 10.200.0.13; do
      ip -n "$NETNS" addr add "$a/24" dev "$HOST_IF"
    done
    ip -n "$NETNS" link set "$HOST_IF" up
    # Service addresses (10.96.0.0/16) are on no interface: the kernel looks a route up
    # before OUTPUT's DNAT of kube-proxy rewrites the address, so a connection the API
    # server or a node makes to a ClusterIP needs a route, as a node's default route
    # gives. tj0 has no ports: what isn't rewritten goes nowhere.
    ip -n "$NETNS" route add default dev "$HOST_IF"
    in_netns sysctl -qw net.ipv4.ip_forward=1
    in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null ||
      log "net.bridge.bridge-nf-call-iptables is not settable here: kube-proxy masquerades all Service traffic"
    log "network namespace $NETNS: $(in_netns ip -br addr show "$HOST_IF" | tr -s ' ')"
    ;;
  down)
    if ip netns list | grep -qw "$NETNS"; then
      ip netns pids "$NETNS" 2>/dev/null | while read -r p; do
        log "netns $NETNS: killing leftover pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80))"
        kill -KILL "$p" 2>/dev/null || true
      done
      ip netns del "$NETNS"
      log "deleted network namespace $NETNS"
    fi
    ;;
  *) die "usage: netns.sh up|down" ;;
esac
