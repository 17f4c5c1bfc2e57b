#!/usr/bin/env bash
# Brings up the e2e control plane on 127.0.0.1: etcd, kube-apiserver (TLS with a generated
# CA, Node,RBAC, a real cluster's admission plugins, feature gates from
# TANDEM_APISERVER_FEATURE_GATES), kube-controller-manager, kube-scheduler and kwok (fake
# nodes annotated kwok.x-k8s.io/node=fake). Writes admin.kubeconfig and
# restricted.kubeconfig (a view-only user without nodes/proxy) into the state dir
# (TANDEM_E2E_STATE, default e2e/.state) and waits until everything is ready.
# Binaries must have been built by build.sh (up.sh builds the missing ones).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
take_lock

if pid_of kube-apiserver >/dev/null && [[ -f "$PKI_DIR/admin.crt" ]] && apiserver_ready; then
  log "already up ($SERVER_URL, state $STATE_DIR)"
  exit 0
fi
# Whatever a previous run left behind goes first.
bash "$E2E_DIR/cluster/down.sh"

for b in "kube-apiserver $K8S_VERSION" "kube-controller-manager $K8S_VERSION" \
  "kube-scheduler $K8S_VERSION" "etcd $ETCD_VERSION" "kwok $KWOK_VERSION"; do
  # shellcheck disable=SC2086
  [[ -x "$(bin_path $b)" ]] || { log "missing $(bin_path $b): building"; bash "$E2E_DIR/cluster/build.sh" current; break; }
done
command -v openssl >/dev/null || die "openssl is not installed"
command -v curl >/dev/null || die "curl is not installed"

for p in "$APISERVER_PORT" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$ETCD_METRICS_PORT" "$KCM_PORT" "$SCHEDULER_PORT" "$KWOK_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is taken: set TANDEM_E2E_PORT_BASE to another base"
  fi
done

mkdir -p "$PKI_DIR" "$LOG_DIR" "$PID_DIR"
start=$(date +%s)

# --- PKI: a CA, the serving certificate, client certificates, service-account keys.
(
  cd "$PKI_DIR"
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout ca.key -out ca.crt -days 3650 -subj "/CN=tandem-e2e-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  sign() { # sign <name> <subject> <extensions>
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -out "$1.crt" -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  client="basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
  sign apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$APISERVER_ADVERTISE,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
  sign admin "/O=system:masters/CN=tandem-e2e-admin" "$client"
  sign kube-controller-manager "/CN=system:kube-controller-manager" "$client"
  sign kube-scheduler "/CN=system:kube-scheduler" "$client"
  sign kwok "/O=system:masters/CN=kwok-controller" "$client"
  sign restricted "/O=tandem:restricted/CN=tandem-e2e-restricted" "$client"
  sign front-proxy-client "/CN=front-proxy-client" "$client"
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

kubeconfig "$ADMIN_KUBECONFIG" admin
kubeconfig "$RESTRICTED_KUBECONFIG" restricted
for c in kube-controller-manager kube-scheduler kwok; do kubeconfig "$STATE_DIR/$c.kubeconfig" "$c"; done

# --- etcd
start_proc etcd "$(bin_path etcd "$ETCD_VERSION")" --name=tandem-e2e --data-dir="$STATE_DIR/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster="tandem-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --listen-metrics-urls="http://127.0.0.1:$ETCD_METRICS_PORT" \
  --unsafe-no-fsync=true --quota-backend-bytes=2147483648 --log-level=warn
wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

# --- kube-apiserver
start_apiserver "$K8S_VERSION" "${TANDEM_APISERVER_FEATURE_GATES:-}"

# --- the restricted identity: read-only (the built-in "view" role) plus reading nodes,
# but no nodes/proxy, no secrets, no writes.
post() { # post <path> <json>: create, tolerating AlreadyExists
  local code
  code="$(kcurl -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data "$2" "$SERVER_URL$1")"
  [[ "$code" == 201 || "$code" == 409 ]] || die "POST $1 answered $code"
}
post /apis/rbac.authorization.k8s.io/v1/clusterroles '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole","metadata":{"name":"tandem-e2e:node-reader"},"rules":[{"apiGroups":[""],"resources":["nodes"],"verbs":["get","list","watch"]}]}'
post /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"tandem-e2e:restricted-view"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"view"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"tandem:restricted"}]}'
post /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"tandem-e2e:restricted-node-reader"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"tandem-e2e:node-reader"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"Group","name":"tandem:restricted"}]}'

# --- kube-controller-manager, kube-scheduler, kwok
start_controllers

log "control plane up in $(($(date +%s) - start))s: KUBECONFIG=$ADMIN_KUBECONFIG"
