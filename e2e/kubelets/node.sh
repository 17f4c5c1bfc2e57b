#!/usr/bin/env bash
# Runs one e2e node: its own containerd (root, state, socket and CNI config under
# $KSTATE/<node>) and an upstream kubelet of the node's version, registered with the e2e
# control plane under the node's name. up.sh starts it as
#   setsid unshare --mount --propagation private bash node.sh <node>
# so that the paths kubelets of 1.27/1.28 hard-code (/var/lib/kubelet, /var/log/pods,
# /var/log/containers) are bind-mounted per node: kubelets never see, nor garbage-collect,
# each other's pods. Every mount made here dies with the namespace. The kubelet runs in
# the foreground; containerd's pid is written to $KSTATE/<node>/containerd.pid.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NODE="$1"
VER="$(node_version "$NODE")"
D="$(node_dir "$NODE")"
PORT="$(node_port "$NODE")"
v="${VER#v}"; MINOR="${v#*.}"; MINOR="${MINOR%%.*}"
MY_NS="$(readlink /proc/self/ns/mnt)"
[[ -n "$MY_NS" && -n "${TANDEM_HOST_MNTNS:-}" && "$MY_NS" != "$TANDEM_HOST_MNTNS" ]] ||
  die "node.sh must run in its own mount namespace, started by up.sh (ns '$MY_NS', host '${TANDEM_HOST_MNTNS:-}')"
# down.sh kills what is left in this namespace: record it from inside, where it is ours.
printf "%s\n" "$MY_NS" >"$D/mntns"

for p in var-lib-kubelet var-log-pods var-log-containers; do mkdir -p "$D/$p"; done
mkdir -p /var/lib/kubelet /var/log/pods /var/log/containers
mount --bind "$D/var-lib-kubelet" /var/lib/kubelet
mount --bind "$D/var-log-pods" /var/log/pods
mount --bind "$D/var-log-containers" /var/log/containers

# --- containerd: its own root, state and socket; CRI with cgroupfs runc and a bridge CNI
# config (pods here are host-network; the bridge has no gateway and no routes, so a pod on
# it could reach nothing beyond its own bridge).
mkdir -p "$D/net.d" "$D/containerd"
if [[ $POD_NETWORK == 1 ]]; then
  # The journey's pod network: the bridge is the pods' gateway (10.244.<i>.1) in the
  # journey's network namespace, whose kernel routes between the nodes' bridges, to the
  # node and API server addresses, and through kube-proxy's rules to Services.
  cat >"$D/net.d/10-tandem-e2e.conflist" <<CNI
{"cniVersion":"0.4.0","name":"tandem-journey-$NODE","plugins":[
 {"type":"bridge","bridge":"tj-$NODE","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$(node_pod_cidr "$NODE")"}]],
          "routes":[{"dst":"0.0.0.0/0"}],"dataDir":"$D/cni-ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true}},
 {"type":"loopback"}]}
CNI
else
idx=$(( $(printf '%s' "$NODE" | cksum | cut -d' ' -f1) % 200 + 20 ))
cat >"$D/net.d/10-tandem-e2e.conflist" <<CNI
{"cniVersion":"0.4.0","name":"tandem-e2e-$NODE","plugins":[
 {"type":"bridge","bridge":"te2e-$NODE","isGateway":false,"ipMasq":false,"hairpinMode":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.254.$idx.0/24"}]],"dataDir":"$D/cni-ipam"}},
 {"type":"loopback"}]}
CNI
fi
cat >"$D/containerd.toml" <<TOML
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$(node_sock "$NODE")"
[ttrpc]
  address = "$(node_sock "$NODE").ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Lowering oom_score_adj is refused on this machine (no CAP_SYS_RESOURCE): runc failed with
  # "failed to update /proc/self/oom_score_adj: Permission denied" for the sandbox (-998).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "${TANDEM_RUNC_BINARY:-runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/net.d"
TOML
rm -f "$(node_sock "$NODE")"
containerd --config "$D/containerd.toml" --log-level warn >>"$D/containerd.log" 2>&1 &
echo $! >"$D/containerd.pid"
for _ in $(seq 1 120); do
  ctr -a "$(node_sock "$NODE")" version >/dev/null 2>&1 && break
  sleep 0.5
done
ctr -a "$(node_sock "$NODE")" version >/dev/null || die "$NODE: containerd did not come up (see $D/containerd.log)"
bash "$KUBELETS_DIR/images.sh" import "$(node_sock "$NODE")"
# More OCI tars to import (the journey: tandem's release images from packaging/build.sh).
for tar in ${TANDEM_KUBELETS_EXTRA_IMAGES:-}; do
  ctr -a "$(node_sock "$NODE")" -n k8s.io images import --no-unpack=false "$tar" >&2
done

# --- kubelet
extra=""
((MINOR < 31)) || extra+=$'failCgroupV1: false\n'
cat >"$D/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip "$NODE")
port: $PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((PORT + 1))
# The apiserver of e2e/cluster has no kubelet client certificate; the kubelet listens on
# 127.0.0.1 only, so logs and exec go through without authentication.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: "$PKI_DIR/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
# Three kubelets share this host: no QoS cgroup hierarchy (each would claim /kubepods),
# no node-allocatable enforcement, no image GC (the images are imported, not pulled).
cgroupsPerQOS: false
enforceNodeAllocatable: []
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%"}
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerNode: true
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
$extra
YAML
exec "$(bin_path kubelet "$VER")" --config="$D/kubelet.yaml" \
  --kubeconfig="$D/kubelet.kubeconfig" --hostname-override="$NODE" --node-ip="$(node_ip "$NODE")" \
  --container-runtime-endpoint="unix://$(node_sock "$NODE")" \
  --node-labels="tandem.dev/e2e-kubelet=$NODE" --v="${TANDEM_KUBELET_VERBOSITY:-2}"
