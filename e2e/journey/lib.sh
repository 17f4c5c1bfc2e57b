# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts
# Shared settings of the in-cluster journey (sourced, not run): the network namespace
# everything runs in, its addresses, and the kubelet suite's settings pointed at the
# journey's own state dir with the pod network on (e2e/kubelets/lib.sh reads them).
JOURNEY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export TANDEM_KUBELETS_STATE="${TANDEM_JOURNEY_STATE:-/var/lib/tandem-journey}"
export TANDEM_KUBELETS_POD_NETWORK=1
# Ports inside the journey's own network namespace: nothing on the host can collide.
export TANDEM_E2E_PORT_BASE="${TANDEM_JOURNEY_PORT_BASE:-25400}"
# The API server listens on every address of the namespace and advertises 10.200.0.1 as
# the `kubernetes` Service's endpoint: pods reach it through kube-proxy's rules for
# 10.96.0.1:443, as in a real cluster.
export TANDEM_APISERVER_BIND=0.0.0.0
export TANDEM_APISERVER_ADVERTISE=10.200.0.1
# The journey's API server: the newest release the module proxy serves when it is built
# (TANDEM_JOURNEY_APISERVER=v1.37.2), else the current one of e2e/cluster.
source "$JOURNEY_DIR/../kubelets/lib.sh"
NETNS="${TANDEM_JOURNEY_NETNS:-tandem-journey}"
# The "host" interface of the namespace: a bridge without ports (this kernel has no dummy
# interfaces) holding the API server's and the three nodes' addresses.
HOST_IF=tj0
KUBE_PROXY_PORT=$((PORT_BASE + 90)) # metrics; healthz is +1
JOURNEY_BIN="$KSTATE/bin"           # kubectl and helm of the pinned releases, on PATH
# Enter the network namespace only: `ip netns exec` also remounts /sys for it, which hides
# the cgroup v1 hierarchies under /sys/fs/cgroup ("failed to get mounted cgroup
# subsystems: failed to find cgroup mounts" from the kubelet).
in_netns() { nsenter --net="/run/netns/$NETNS" "$@"; }
