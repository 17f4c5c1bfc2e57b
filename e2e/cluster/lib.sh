# Shared settings for the e2e control-plane scripts (sourced, not run): versions,
# cache and state directories, ports. Every value can be overridden by the environment.

# shellcheck shell=bash disable=SC2034
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Versions (pinned). The current release builds apiserver, controller-manager and
# scheduler; the old release only builds kube-apiserver (SidecarContainers can be
# switched off there; it is locked on from 1.33).
K8S_VERSION="${TANDEM_K8S_VERSION:-v1.36.3}"
K8S_OLD_VERSION="${TANDEM_K8S_OLD_VERSION:-v1.32.13}"
ETCD_VERSION="${TANDEM_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${TANDEM_KWOK_VERSION:-v0.8.0}"
# helm, for the chart's tests (charts/tandem): built from the Go module proxy.
HELM_VERSION="${TANDEM_HELM_VERSION:-v3.22.0}"

CACHE_DIR="${TANDEM_CACHE:-$HOME/.cache/tandem}"
BIN_DIR="$CACHE_DIR/bin"
STATE_DIR="${TANDEM_E2E_STATE:-$E2E_DIR/.state}"

# Ports on 127.0.0.1, all derived from one base so that a second cluster can run
# beside the first with TANDEM_E2E_PORT_BASE=27400 (for example).
PORT_BASE="${TANDEM_E2E_PORT_BASE:-26400}"
APISERVER_PORT="${TANDEM_APISERVER_PORT:-$((PORT_BASE + 43))}"
ETCD_CLIENT_PORT="${TANDEM_ETCD_CLIENT_PORT:-$((PORT_BASE + 79))}"
ETCD_PEER_PORT="${TANDEM_ETCD_PEER_PORT:-$((PORT_BASE + 80))}"
ETCD_METRICS_PORT="${TANDEM_ETCD_METRICS_PORT:-$((PORT_BASE + 81))}"
KCM_PORT="${TANDEM_KCM_PORT:-$((PORT_BASE + 57))}"
SCHEDULER_PORT="${TANDEM_SCHEDULER_PORT:-$((PORT_BASE + 59))}"
KWOK_PORT="${TANDEM_KWOK_PORT:-$((PORT_BASE + 47))}"

log() { printf '[tandem-e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Path of a cached binary: bin_path kube-apiserver v1.37.2
bin_path() { printf '%s/%s-%s' "$BIN_DIR" "$1" "$2"; }

PKI_DIR="$STATE_DIR/pki"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$STATE_DIR/pids"
ADMIN_KUBECONFIG="$STATE_DIR/admin.kubeconfig"
RESTRICTED_KUBECONFIG="$STATE_DIR/restricted.kubeconfig"
SERVER_URL="https://127.0.0.1:$APISERVER_PORT"
# Where kube-apiserver listens and what it advertises as the `kubernetes` Service's
# endpoint. Loopback by default; the in-cluster journey (e2e/journey) runs the control plane
# in its own network namespace and advertises an address pods can reach (10.200.0.1).
APISERVER_BIND="${TANDEM_APISERVER_BIND:-127.0.0.1}"
APISERVER_ADVERTISE="${TANDEM_APISERVER_ADVERTISE:-127.0.0.1}"

# Admission plugins a real cluster runs (the defaults of 1.29+, plus NodeRestriction);
# every name exists in both the current and the old release.
ADMISSION_PLUGINS="NamespaceLifecycle,LimitRanger,ServiceAccount,TaintNodesByCondition,PodSecurity,Priority,DefaultTolerationSeconds,DefaultStorageClass,StorageObjectInUseProtection,PersistentVolumeClaimResize,RuntimeClass,CertificateApproval,CertificateSigning,CertificateSubjectRestriction,DefaultIngressClass,NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook,ResourceQuota"

# take_lock: one script at a time per state dir, across processes (several test binaries
# or developers may call up.sh at once). The lock file sits beside the state dir so that
# down.sh's rm -rf keeps it; scripts called by a script that holds it do not wait.
take_lock() {
  [[ "${TANDEM_E2E_LOCK_HELD:-}" == "$STATE_DIR" ]] && return 0
  command -v flock >/dev/null || return 0
  mkdir -p "$(dirname "$STATE_DIR")"
  exec 9>"$STATE_DIR.lock"
  if ! flock -n 9; then
    log "waiting for $STATE_DIR.lock (another e2e script runs on this state dir)"
    flock -w "${TANDEM_E2E_LOCK_TIMEOUT:-900}" 9 || die "timed out waiting for $STATE_DIR.lock"
  fi
  export TANDEM_E2E_LOCK_HELD="$STATE_DIR"
}

# Admin curl against the API server.
kcurl() {
  curl -sS --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" "$@"
}

pid_of() { # pid_of <name>: prints the pid if that process is alive
  local f="$PID_DIR/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: it must still be one of our binaries.
  grep -qaF -- "$BIN_DIR/" "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

# start_proc <name> <binary> <args...>: runs it in its own session, logs to LOG_DIR.
start_proc() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR" "$PID_DIR"
  log "starting $name: $1"
  # fd 9 (the state lock) must not live on in the daemons.
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PID_DIR/$name.pid"
}

# stop_procs <name>...: SIGTERM to each (only the pid this state recorded), then SIGKILL
# to what is still alive after 10 s.
stop_procs() {
  local name pid i pids=()
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$PID_DIR/$name.pid"
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ignored SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}
stop_proc() { stop_procs "$1"; }

# wait_for <what> <seconds> <command...>: polls until the command succeeds.
wait_for() {
  local what="$1" secs="$2" i; shift 2
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then log "$what is ready"; return 0; fi
    sleep 0.25
  done
  log "$what not ready after ${secs}s; last log lines:"
  tail -n 30 "$LOG_DIR/${what%% *}.log" >&2 2>/dev/null || true
  return 1
}

apiserver_ready() { [[ "$(kcurl -f "$SERVER_URL/readyz" 2>/dev/null)" == ok ]]; }

# start_apiserver <version> <feature-gates>: starts kube-apiserver and waits for /readyz.
# A version other than the current one keeps its objects under its own etcd prefix, so an
# older server never reads objects stored by a newer one.
start_apiserver() {
  local ver="$1" gates="$2" bin prefix=/registry
  bin="$(bin_path kube-apiserver "$ver")"
  [[ -x "$bin" ]] || die "$bin is missing: run e2e/cluster/build.sh apiserver $ver"
  [[ "$ver" == "$K8S_VERSION" ]] || prefix="/registry-$ver"
  # shellcheck disable=SC2054 # commas are inside flag values
  local args=(
    --bind-address="$APISERVER_BIND" --advertise-address="$APISERVER_ADVERTISE" --secure-port="$APISERVER_PORT"
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" --etcd-prefix="$prefix"
    --tls-cert-file="$PKI_DIR/apiserver.crt" --tls-private-key-file="$PKI_DIR/apiserver.key"
    --client-ca-file="$PKI_DIR/ca.crt"
    --requestheader-client-ca-file="$PKI_DIR/ca.crt" --requestheader-allowed-names=front-proxy-client
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group
    --requestheader-extra-headers-prefix=X-Remote-Extra-
    --proxy-client-cert-file="$PKI_DIR/front-proxy-client.crt" --proxy-client-key-file="$PKI_DIR/front-proxy-client.key"
    --service-account-key-file="$PKI_DIR/sa.pub" --service-account-signing-key-file="$PKI_DIR/sa.key"
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-cluster-ip-range=10.96.0.0/16
    --authorization-mode=Node,RBAC --enable-admission-plugins="$ADMISSION_PLUGINS"
    --allow-privileged=true --profiling=false --v="${TANDEM_E2E_VERBOSITY:-1}"
  )
  [[ -z "$gates" ]] || args+=(--feature-gates="$gates")
  # From 1.37 the default endpoint reconciler refuses a loopback advertise address
  # ("cannot use public IP 127.0.0.1 with endpoint reconciler"); nothing here needs the
  # `kubernetes` Service's endpoints, so turn the reconciler off there.
  local minor="${ver#v1.}"; minor="${minor%%.*}"
  if [[ "$minor" =~ ^[0-9]+$ ]] && ((minor >= 37)) && [[ "$APISERVER_ADVERTISE" == 127.* ]]; then
    args+=(--endpoint-reconciler-type=none)
  fi
  # shellcheck disable=SC2206 # deliberate word splitting of extra flags
  [[ -z "${TANDEM_APISERVER_EXTRA_ARGS:-}" ]] || args+=($TANDEM_APISERVER_EXTRA_ARGS)
  {
    echo "# $(date -u +%FT%TZ) kube-apiserver $ver gates='${gates}'"
  } >>"$LOG_DIR/kube-apiserver.log"
  start_proc kube-apiserver "$bin" "${args[@]}"
  wait_for "kube-apiserver $ver" "${TANDEM_APISERVER_TIMEOUT:-120}" apiserver_ready || return 1
  write_env "$ver" "$gates"
}

# write_env: what the Rust test support reads (cluster.env, KEY=VALUE lines).
write_env() {
  cat >"$STATE_DIR/cluster.env" <<ENV
TANDEM_E2E_SERVER=$SERVER_URL
TANDEM_E2E_APISERVER_VERSION=$1
TANDEM_E2E_APISERVER_FEATURE_GATES=$2
TANDEM_E2E_K8S_VERSION=$K8S_VERSION
TANDEM_E2E_K8S_OLD_VERSION=$K8S_OLD_VERSION
TANDEM_E2E_ETCD_VERSION=$ETCD_VERSION
TANDEM_E2E_KWOK_VERSION=$KWOK_VERSION
TANDEM_E2E_PORT_BASE=$PORT_BASE
ENV
}

# start_controllers: kube-controller-manager, kube-scheduler and kwok (current release),
# waiting until each is healthy and the service-account controller works.
start_controllers() {
  local kcm_cfg sched_cfg
  # --- kube-controller-manager and kube-scheduler
  kcm_cfg="$STATE_DIR/kube-controller-manager.kubeconfig"
  start_proc kube-controller-manager "$(bin_path kube-controller-manager "$K8S_VERSION")" \
    --kubeconfig="$kcm_cfg" --authentication-kubeconfig="$kcm_cfg" --authorization-kubeconfig="$kcm_cfg" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE_DIR/kcm-certs" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI_DIR/sa.key" --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --controllers='*' --v="${TANDEM_E2E_VERBOSITY:-1}"
  sched_cfg="$STATE_DIR/kube-scheduler.kubeconfig"
  start_proc kube-scheduler "$(bin_path kube-scheduler "$K8S_VERSION")" \
    --kubeconfig="$sched_cfg" --authentication-kubeconfig="$sched_cfg" --authorization-kubeconfig="$sched_cfg" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$STATE_DIR/scheduler-certs" \
    --leader-elect=false --v="${TANDEM_E2E_VERBOSITY:-1}"

  # --- kwok: manages only nodes annotated kwok.x-k8s.io/node=fake, with upstream's default
  # stages (node initialize + lease heartbeat, pod ready/complete/delete).
  start_proc kwok "$(bin_path kwok "$KWOK_VERSION")" \
    --kubeconfig="$STATE_DIR/kwok.kubeconfig" --config="$(bin_path kwok-stages "$KWOK_VERSION").yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds=40 --cidr=10.0.0.0/16 --node-ip=127.0.0.1 \
    --server-address="127.0.0.1:$KWOK_PORT"

  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"
  wait_for kwok 60 curl -sf "http://127.0.0.1:$KWOK_PORT/healthz"
  # The service-account controller works once "default" has its default ServiceAccount.
  wait_for "kube-controller-manager serviceaccounts" 60 kcurl -f "$SERVER_URL/api/v1/namespaces/default/serviceaccounts/default"
}

# kubeconfig <file> <cert name>: a kubeconfig for the API server that authenticates with
# the client certificate $PKI_DIR/<cert name>.{crt,key} (up.sh, the kubelets, kube-proxy).
kubeconfig() { # kubeconfig <file> <cert name>
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: tandem-e2e
  cluster:
    server: $SERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$2.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$2.key")
contexts:
- name: tandem-e2e
  context:
    cluster: tandem-e2e
    user: $2
current-context: tandem-e2e
KC
}
