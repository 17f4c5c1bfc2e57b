#!/usr/bin/env bash
# The journey's tests (issue 11), run by run.sh inside the journey's network namespace
# with KUBECONFIG, PATH (kubectl, helm and tandem of the pinned releases) and ROOT set.
# Each test is a function; they run in order and later ones build on earlier ones (the
# install first). Prints `N passed, M failed`; exit 0 only when every test passed.
# Arguments: test names to run (default: all).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${ROOT:?ROOT must name the repository (run.sh sets it)}"
TNS=tandem-system          # tandem's namespace
APPS=journey-apps          # the opted-in namespace
EV="$KSTATE/events"        # hostPath directories the test sidecar and app write to
CHART="$ROOT/charts/tandem"
# Fresh for every run: a previous run's events would count as this one's.
rm -rf "$EV"
mkdir -p "$EV"

k() { kubectl "$@"; }
fail() { log "FAIL: $*"; return 1; }
# until_ok <what> <seconds> <command...>: e2e/cluster/lib.sh's wait_for, failing the test.
until_ok() { wait_for "$@" || fail "$1: not after $2s"; }
events() { cut -d' ' -f2- "$EV/$1/events" 2>/dev/null || true; }
count() { grep -c -- "$2" <<<"$1" || true; }
pod_of() { k -n "$1" get pods -l "$2" -o jsonpath='{.items[0].metadata.name}'; }
pod_json() { k -n "$1" get pod "$2" -o json; }
# The names of the pod's restartable (native) sidecars and of its regular containers.
native_of() { jq -r '[.spec.initContainers[]? | select(.restartPolicy == "Always") | .name] | join(",")'; }
regular_of() { jq -r '[.spec.containers[].name] | join(",")'; }
mode_of() { jq -r '.metadata.annotations["tandem.dev/status"] // "" | fromjson? | .mode // ""'; }

# doctor_green [--wait]: every tandem check of `tandem doctor` passes. The cluster has
# old kubelets on purpose, so the doctor's `nodes` check fails (it names k-128 and k-old
# until they are upgraded): exit 1 is expected, 2 (could not run) never.
doctor_green() {
  local out rc=0 bad
  out="$(tandem doctor ${1:+--wait 120s} -o json)" || rc=$?
  [[ $rc != 2 ]] || fail "tandem doctor could not run: $out"
  bad="$(jq -r '.checks[] | select((.id | startswith("tandem-")) and .status != "pass") | "\(.id): \(.status): \(.summary)"' <<<"$out")"
  [[ -z "$bad" ]] || fail "tandem doctor: $bad"
  log "doctor: $(jq -r '[.checks[] | "\(.id)=\(.status)"] | join(" ")' <<<"$out")"
}

# --- the workloads (kubectl apply; never tandem's own client)

# pod_template <workload> <node|-> <restartPolicy> <app seconds>: the app (test image),
# pinned to <node> by the kubelet's hostname label, the events hostPath at /e2e, and a few
# fields tandem never touches (checked unchanged on the pod).
pod_template() {
  local w="$1" node="$2" restart="$3" secs="$4" sel=""
  [[ "$node" == - ]] || sel="nodeSelector: {kubernetes.io/hostname: $node}"
  cat <<YAML
    metadata:
      labels: {journey: "$w"}
      annotations: {journey.example/keep: "as is"}
    spec:
      $sel
      restartPolicy: $restart
      terminationGracePeriodSeconds: 20
      enableServiceLinks: false
      volumes:
        - {name: e2e, hostPath: {path: "$EV/$w", type: DirectoryOrCreate}}
      containers:
        - name: app
          image: tandem.local/e2e-app:e2e
          imagePullPolicy: Never
          command: [/app]
          env: [{name: APP_SECONDS, value: "$secs"}]
          terminationMessagePolicy: FallbackToLogsOnError
          resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]
          volumeMounts: [{name: e2e, mountPath: /e2e}]
YAML
}
deployment() { # deployment <name> <node>
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $1, namespace: $APPS}
spec:
  replicas: 1
  selector: {matchLabels: {journey: "$1"}}
  template:
$(pod_template "$1" "$2" Always forever)
YAML
}
job() { # job <name> <node>
  cat <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: $1, namespace: $APPS}
spec:
  backoffLimit: 0
  template:
$(pod_template "$1" "$2" Never 3)
YAML
}
cronjob() { # cronjob <name> <node>
  cat <<YAML
apiVersion: batch/v1
kind: CronJob
metadata: {name: $1, namespace: $APPS}
spec:
  schedule: "* * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
$(pod_template "$1" "$2" Never 3 | sed 's/^/    /')
YAML
}

# The form auto must give a pod pinned to each node: what that node's kubelet runs.
expected_native() { case "$1" in k-new) echo helper ;; *) echo "" ;; esac; }

# ---------------------------------------------------------------- the tests

# 1. helm install: the webhook pods schedule and pass their probes, the Service has
#    endpoints, the doctor turns green.
test_install() {
  helm install tandem "$CHART" -n "$TNS" --create-namespace -f "$JOURNEY_DIR/values.yaml" \
    --wait --timeout 5m
  k -n "$TNS" rollout status deploy/tandem-webhook --timeout=180s
  local ready eps
  ready="$(k -n "$TNS" get deploy tandem-webhook -o jsonpath='{.status.readyReplicas}')"
  [[ "$ready" == 2 ]] || fail "readyReplicas $ready, want 2"
  eps="$(k -n "$TNS" get endpointslices -l kubernetes.io/service-name=tandem-webhook \
    -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}{" "}{.conditions.ready}{"\n"}{end}' | grep -c ' true' || true)"
  [[ "$eps" == 2 ]] || fail "the Service has $eps ready endpoints, want 2"
  log "webhook pods: $(k -n "$TNS" get pods -l app.kubernetes.io/name=tandem-webhook -o wide --no-headers | awk '{print $1 "@" $7 " " $6}' | tr '\n' ' ')"
  doctor_green --wait
}

# 2. A namespace opted in; a Deployment, a Job and a CronJob per node, created with
#    kubectl, injected by the in-cluster webhook in auto mode.
test_auto_workloads() {
  k create namespace "$APPS" --dry-run=client -o yaml | k apply -f -
  k label namespace "$APPS" tandem.dev/inject=enabled --overwrite
  # Legacy sidecars in Jobs run under tandem-shim, which reads its pod (crates/shim).
  k -n "$APPS" create role shim-reads-pods --verb=get --resource=pods --dry-run=client -o yaml | k apply -f -
  k -n "$APPS" create rolebinding shim-reads-pods --role=shim-reads-pods \
    --serviceaccount="$APPS:default" --dry-run=client -o yaml | k apply -f -
  local n
  cronjob cron-k-new k-new | k apply -f -
  for n in "${NODES[@]}"; do
    { deployment "d-$n" "$n"; echo ---; job "j-$n" "$n"; } | k apply -f -
  done
  for n in "${NODES[@]}"; do
    k -n "$APPS" rollout status "deploy/d-$n" --timeout=180s
    k -n "$APPS" wait --for=condition=complete "job/j-$n" --timeout=180s ||
      fail "job j-$n did not complete on $n: $(k -n "$APPS" get pods -l journey="j-$n" -o wide)"
    check_injected "d-$n" "$n" Deployment
    check_injected "j-$n" "$n" Job
  done
  # The CronJob's first Job (the schedule is every minute).
  until_ok "a Job of cronjob cron-k-new completing" 150 \
    bash -c "kubectl -n $APPS get jobs -o json | jq -e '[.items[] | select(.metadata.ownerReferences[0].name == \"cron-k-new\") | select(.status.succeeded == 1)] | length > 0'"
  check_injected cron-k-new k-new CronJob
}

# check_injected <workload> <node> <kind>: its pod ran on <node> in the form that node
# runs, the sidecar was ready before the app (where the form promises it), exactly one
# sidecar process ran, and the app's container and the untouched fields are unchanged.
check_injected() {
  local w="$1" node="$2" kind="$3" pod pj want native ev template
  pod="$(pod_of "$APPS" "journey=$w")"
  pj="$(pod_json "$APPS" "$pod")"
  [[ "$(jq -r .spec.nodeName <<<"$pj")" == "$node" ]] || fail "$w: pod $pod is on $(jq -r .spec.nodeName <<<"$pj"), want $node"
  native="$(native_of <<<"$pj")"; want="$(expected_native "$node")"
  [[ "$native" == "$want" ]] || fail "$w on $node: native sidecars '$native', want '$want' (mode $(mode_of <<<"$pj"))"
  if [[ -z "$want" ]]; then
    [[ ",$(regular_of <<<"$pj")," == *,helper,* ]] || fail "$w on $node: no regular helper container: $(regular_of <<<"$pj")"
  fi
  ev="$(events "$w")"
  [[ "$(count "$ev" '^sidecar start')" -ge 1 ]] || fail "$w: the sidecar never started: $ev"
  if [[ -n "$want" ]]; then
    grep -q '^app start sidecar-ready=yes' <<<"$ev" || fail "$w: the app started before the sidecar was ready: $ev"
  fi
  # The app's container as the workload's template has it (both defaulted by the API
  # server the same way), and the fields tandem has no business with.
  case "$kind" in
    Deployment) template="$(k -n "$APPS" get deploy "$w" -o json | jq .spec.template)" ;;
    Job) template="$(k -n "$APPS" get job "$w" -o json | jq .spec.template)" ;;
    CronJob) template="$(k -n "$APPS" get cronjob "$w" -o json | jq .spec.jobTemplate.spec.template)" ;;
  esac
  # (The ServiceAccount admission plugin adds the token's mount to every container.)
  local app='.spec.containers[] | select(.name == "app") | del(.volumeMounts[]? | select(.name | startswith("kube-api-access-")))'
  diff <(jq -S "$app" <<<"$template") <(jq -S "$app" <<<"$pj") >&2 ||
    fail "$w: the app's container changed"
  [[ "$(jq -r '.metadata.annotations["journey.example/keep"]' <<<"$pj")" == "as is" ]] || fail "$w: annotation lost"
  [[ "$(jq -r '.spec.enableServiceLinks' <<<"$pj")" == false ]] || fail "$w: enableServiceLinks lost"
  log "$w on $node: $(mode_of <<<"$pj"), native [$native], containers [$(regular_of <<<"$pj")]"
}

# --- pods created at a steady rate (availability): creator_start <tag> / creator_stop
# A bare pod every 0.5 s in an opted-in namespace, left Pending (its nodeSelector matches
# no node: what is measured is admission, and Pending pods cost the nodes nothing). Each
# create's outcome is a line in $KSTATE/creates-<tag>.log: "ok <name>" or "fail <message>".
AVAIL=journey-avail
creator_start() {
  local log="$KSTATE/creates-$1.log"
  : >"$log"
  k create namespace "$AVAIL" --dry-run=client -o yaml | k apply -f - >/dev/null
  k label namespace "$AVAIL" tandem.dev/inject=enabled --overwrite >/dev/null
  (
    i=0
    while [[ ! -e "$log.stop" ]]; do
      i=$((i + 1))
      name="$1-$(date +%s)-$i"
      if out="$(k -n "$AVAIL" create -f - 2>&1 <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {journey: avail}}
spec:
  nodeSelector: {journey.example/none: "none"}
  volumes: [{name: e2e, emptyDir: {}}]
  containers: [{name: app, image: tandem.local/e2e-app:e2e, imagePullPolicy: Never, command: [/app]}]
YAML
)"; then echo "ok $name" >>"$log"; else echo "fail $name $(tr '\n' ' ' <<<"$out")" >>"$log"; fi
      sleep 0.5
    done
  ) &
  CREATOR_PID=$!
}
# creator_stop <tag>: stops the loop; prints "<ok> <failed>"; the failures go to the log.
creator_stop() {
  local log="$KSTATE/creates-$1.log"
  touch "$log.stop"
  wait "$CREATOR_PID" 2>/dev/null || true
  rm -f "$log.stop"
  grep '^fail' "$log" >&2 || true
  echo "$(grep -c '^ok' "$log" || true) $(grep -c '^fail' "$log" || true)"
}
webhook_ready() { [[ "$(k -n "$TNS" get deploy tandem-webhook -o jsonpath='{.status.readyReplicas}')" == "${1:-2}" ]]; }
webhook_pods() { k -n "$TNS" get pods -l app.kubernetes.io/name=tandem-webhook -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.nodeName}{"\n"}{end}'; }

# 3. Availability: a webhook pod deleted, then its node cordoned and drained, while pods
#    are created: no create fails. With every webhook pod gone, `Fail` rejects creates
#    with a message naming tandem, and the doctor names the cause.
test_availability() {
  local victim node counts
  creator_start delete
  sleep 5
  victim="$(webhook_pods | awk 'NR == 1 {print $1}')"
  log "deleting webhook pod $victim"
  k -n "$TNS" delete pod "$victim" --wait=true --timeout=90s
  until_ok "2 ready webhook replicas after the delete" 120 webhook_ready 2
  sleep 5
  counts="$(creator_stop delete)"
  log "creates while a webhook pod was deleted: ${counts% *} ok, ${counts#* } failed"
  [[ "${counts#* }" == 0 && "${counts% *}" -gt 10 ]] || fail "creates failed while a webhook pod was deleted"

  creator_start drain
  sleep 5
  node="$(webhook_pods | awk 'NR == 1 {print $2}')"
  log "cordoning and draining $node (tandem's pods; the journey's own workloads stay)"
  k cordon "$node"
  k drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=180s \
    --pod-selector=app.kubernetes.io/name=tandem-webhook
  until_ok "2 ready webhook replicas after the drain" 120 webhook_ready 2
  sleep 5
  counts="$(creator_stop drain)"
  k uncordon "$node"
  log "creates while $node was drained: ${counts% *} ok, ${counts#* } failed"
  [[ "${counts#* }" == 0 && "${counts% *}" -gt 10 ]] || fail "creates failed while a node was drained"

  # Every webhook pod gone: failurePolicy Fail refuses, and says who.
  k -n "$TNS" scale deploy/tandem-webhook --replicas=0
  until_ok "no webhook pod left" 120 bash -c "[[ -z \"\$(kubectl -n $TNS get pods -l app.kubernetes.io/name=tandem-webhook -o name)\" ]]"
  local out rc=0
  out="$(k -n "$AVAIL" run refused --image=tandem.local/e2e-app:e2e --image-pull-policy=Never \
    --overrides='{"spec":{"nodeSelector":{"journey.example/none":"none"}}}' 2>&1)" || rc=$?
  log "create with no webhook pod: rc $rc: $out"
  [[ $rc != 0 ]] || fail "a pod was created with no webhook running (failurePolicy Fail)"
  grep -qi tandem <<<"$out" || fail "the refusal does not name tandem: $out"
  rc=0
  local t0=$SECONDS
  out="$(tandem doctor 2>&1)" || rc=$?
  log "doctor with no webhook pod (exit $rc, $((SECONDS - t0))s):"$'\n'"$out"
  ((SECONDS - t0 < 60)) || fail "the doctor took $((SECONDS - t0))s to report a webhook without pods"
  [[ $rc == 1 ]] || fail "doctor exit $rc with no webhook pod, want 1"
  grep -qiE 'no ready|endpoint|replica|unavailable' <<<"$out" || fail "the doctor does not name the cause"
  k -n "$TNS" scale deploy/tandem-webhook --replicas=2
  until_ok "2 ready webhook replicas again" 180 webhook_ready 2
  doctor_green --wait
  k -n "$AVAIL" delete pods -l journey=avail --wait=false >/dev/null
}

# universal <name>: a Deployment that may land on k-new or k-old (required node
# affinity) and prefers k-old: auto gives it the universal form (one node runs native
# sidecars, the other ignores the field), and the regular copy acts on k-old.
universal() {
  deployment "$1" - | sed "s|      enableServiceLinks: false|      enableServiceLinks: false\n      affinity:\n        nodeAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [k-new, k-old]}]}]\n          preferredDuringSchedulingIgnoredDuringExecution:\n            - {weight: 100, preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [k-old]}]}}|"
}
node_label() { k get node "$1" -o jsonpath='{.metadata.labels.tandem\.dev/native-sidecars}'; }
kubelet_of() { k get node "$1" -o jsonpath='{.status.nodeInfo.kubeletVersion}'; }
node_ready() { [[ "$(k get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
pod_ready() { [[ "$(k -n "$APPS" get pod "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
# upgrade_node <node>: the node stops (kubelet, containerd and its containers: what a
# node's reboot does) and comes back as the current kubelet under the same name, its
# state (pods, volumes) kept.
upgrade_node() {
  local n="$1" was
  was="$(kubelet_of "$n")"
  bash "$KUBELETS_DIR/down.sh" --node "$n"
  echo "$KUBELET_NEW" >"$(node_dir "$n")/kubelet-version"
  TANDEM_KUBELET_NODES="$n" bash "$KUBELETS_DIR/up.sh"
  until_ok "$n Ready as $KUBELET_NEW" 120 bash -c "[[ \"\$(kubectl get node $n -o jsonpath='{.status.nodeInfo.kubeletVersion}')\" == $KUBELET_NEW ]]"
  until_ok "$n Ready" 120 node_ready "$n"
  log "$n upgraded in place: $was -> $(kubelet_of "$n")"
}

# 4. A node upgrade in place: k-128 (1.28, gate off) and k-old (1.27) come back as the
#    current kubelet. The labeller flips k-128's label, new pods there get native
#    sidecars, auto's decisions change without the webhook restarting, the pods that ran
#    there before run again, and a universal pod on k-old keeps exactly one acting copy
#    through the sandbox restart. As a platform team would, tandem's own pods are moved
#    off the two nodes first (a drain of tandem's pods), so the webhook keeps serving
#    from k-new and its pods are the same ones afterwards; the workloads stay put.
test_node_upgrade() {
  local before after pod upod ev n
  universal u-univ | k apply -f -
  k -n "$APPS" rollout status deploy/u-univ --timeout=180s
  upod="$(pod_of "$APPS" journey=u-univ)"
  [[ "$(k -n "$APPS" get pod "$upod" -o jsonpath='{.spec.nodeName}')" == k-old ]] || fail "u-univ is not on k-old"
  [[ "$(pod_json "$APPS" "$upod" | mode_of)" == universal ]] || fail "u-univ is not universal: $(pod_json "$APPS" "$upod" | mode_of)"
  ev="$(events u-univ)"
  [[ "$(count "$ev" '^sidecar start')" == 1 ]] && grep -q '^sidecar start state=legacy-active' <<<"$ev" ||
    fail "u-univ on k-old: want one regular copy acting: $ev"
  [[ "$(node_label k-128)" == false ]] || fail "k-128 is labelled '$(node_label k-128)' before the upgrade, want false"
  pod="$(pod_of "$APPS" journey=d-k-128)"
  : >"$EV/u-univ/events"

  for n in k-128 k-old; do
    k cordon "$n"
    k drain "$n" --ignore-daemonsets --delete-emptydir-data --timeout=180s \
      --pod-selector=app.kubernetes.io/name=tandem-webhook
  done
  until_ok "2 ready webhook replicas on k-new" 120 webhook_ready 2
  before="$(k -n "$TNS" get pods -l app.kubernetes.io/name=tandem-webhook -o jsonpath='{range .items[*]}{.metadata.uid}:{.status.containerStatuses[0].restartCount} {end}')"
  for n in k-128 k-old; do upgrade_node "$n"; k uncordon "$n"; done
  until_ok "the labeller to label k-128 true" 120 bash -c "[[ \"\$(kubectl get node k-128 -o jsonpath='{.metadata.labels.tandem\.dev/native-sidecars}')\" == true ]]"

  # The pods that ran there run again: same pods, new sandboxes.
  until_ok "d-k-128's pod $pod running again on k-128" 180 pod_ready "$pod"
  until_ok "u-univ's pod $upod running again on k-old" 180 pod_ready "$upod"
  sleep 3
  ev="$(events u-univ)"
  [[ "$(count "$ev" '^sidecar start')" == 1 ]] || fail "u-univ after the upgrade: want exactly one acting copy: $ev"
  # Which copy acts in the new sandbox is the shim's handshake's to decide (on this run:
  # the native copy, state native-running); that only one does is the promise.
  log "u-univ after the sandbox restart: $(tr '\n' ';' <<<"$ev")"

  # New pods there get native sidecars; the webhook was not restarted. The webhook's
  # node cache is a watch: allow it a few seconds to see the node's new status, and say
  # how long it took.
  local try native=""
  for try in 1 2 3 4; do
    k -n "$APPS" delete deploy d-k-128 --ignore-not-found --wait=true --timeout=120s
    deployment d-k-128 k-128 | k apply -f -
    k -n "$APPS" rollout status deploy/d-k-128 --timeout=180s
    pod="$(pod_of "$APPS" journey=d-k-128)"
    native="$(pod_json "$APPS" "$pod" | native_of)"
    [[ "$native" != helper ]] || break
    log "try $try: a new pod on upgraded k-128 got mode $(pod_json "$APPS" "$pod" | mode_of); its events:"
    k -n "$APPS" get events -o json | jq -r '.items[] | select(.involvedObject.name | startswith("d-k-128")) |
      select(.reason == "PatchedAtAdmission") | .message' | tail -2 >&2 || true
    k get node k-128 -o json | jq -c '{v: .status.nodeInfo.kubeletVersion, l: .metadata.labels["tandem.dev/native-sidecars"]}' >&2 || true
    sleep 5
  done
  [[ "$native" == helper ]] || fail "a new pod on upgraded k-128 has no native sidecar after 4 tries"
  log "a new pod on upgraded k-128 got native sidecars (try $try)"
  after="$(k -n "$TNS" get pods -l app.kubernetes.io/name=tandem-webhook -o jsonpath='{range .items[*]}{.metadata.uid}:{.status.containerStatuses[0].restartCount} {end}')"
  [[ "$before" == "$after" ]] || fail "the webhook pods changed: $before -> $after"
}

# 5. helm upgrade to a new sidecar configuration and a new tandem image while pods are
#    created: the webhook rolls without a failed create, `tandem status` lists the
#    workloads still running the old sidecar, and a restarted one gets the new sidecar.
test_helm_upgrade() {
  local counts pod rev
  creator_start upgrade
  sleep 3
  helm upgrade tandem "$CHART" -n "$TNS" -f "$JOURNEY_DIR/values.yaml" -f "$JOURNEY_DIR/values-next.yaml" \
    --wait --timeout 5m
  k -n "$TNS" rollout status deploy/tandem-webhook --timeout=180s
  sleep 5
  counts="$(creator_stop upgrade)"
  log "creates during the helm upgrade: ${counts% *} ok, ${counts#* } failed"
  [[ "${counts#* }" == 0 && "${counts% *}" -gt 10 ]] || fail "creates failed during the helm upgrade"
  [[ "$(k -n "$TNS" get deploy tandem-webhook -o jsonpath='{.spec.template.spec.containers[0].image}')" == *:0.1.0-next ]] ||
    fail "the webhook did not roll to the new image"
  # What a user asks after every upgrade: which pods still run the old sidecar.
  local listed
  listed="$(tandem status -n "$APPS" -o json)"
  log "tandem status after the upgrade: $(jq -c '[.[] | "\(.ownerKind)/\(.ownerName) \(.sidecarKind)/\(.sidecar) \(.podRevision)->\(.currentRevision) \(.pods | length) pod(s)"]' <<<"$listed")"
  for n in "${NODES[@]}"; do
    jq -e --arg d "d-$n" '[.[] | select(.ownerKind == "Deployment" and .ownerName == $d and .sidecarKind == "Config")] | length == 1' <<<"$listed" >/dev/null ||
      fail "tandem status does not list d-$n as running the old configuration's sidecar"
  done
  k -n "$APPS" rollout restart deploy/d-k-new
  k -n "$APPS" rollout status deploy/d-k-new --timeout=180s
  until_ok "d-k-new off tandem status' list" 60 bash -c \
    "tandem status -n $APPS -o json | jq -e '[.[] | select(.ownerName == \"d-k-new\")] | length == 0'"
  pod="$(k -n "$APPS" get pods -l journey=d-k-new --field-selector=status.phase=Running -o json |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)][0].metadata.name')"
  rev="$(pod_json "$APPS" "$pod" | jq -r '[.spec.initContainers[]?, .spec.containers[] | select(.name == "helper") | .env[]? | select(.name == "SIDECAR_REVISION") | .value][0]')"
  [[ "$rev" == 2 ]] || fail "a new pod got sidecar revision '$rev', want 2"
  doctor_green --wait
  k -n "$AVAIL" delete pods -l journey=avail --wait=false >/dev/null
}

# 6. helm uninstall while pods are created: no create fails (the webhook configuration
#    goes first), and nothing of tandem's is left.
test_uninstall() {
  local counts left
  creator_start uninstall
  sleep 3
  helm uninstall tandem -n "$TNS" --wait --timeout 3m
  until_ok "tandem's pods gone" 120 bash -c "[[ -z \"\$(kubectl -n $TNS get pods -o name)\" ]]"
  sleep 3
  counts="$(creator_stop uninstall)"
  log "creates during helm uninstall: ${counts% *} ok, ${counts#* } failed"
  [[ "${counts#* }" == 0 && "${counts% *}" -gt 5 ]] || fail "creates failed during helm uninstall"
  # (tandem-e2e:* are the test cluster's own roles, made by e2e/cluster/up.sh.)
  left="$(k get mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings -o name |
    grep -i tandem | grep -v '/tandem-e2e:' || true)"
  left+="$(k -n "$TNS" get all,secrets,configmaps,leases,roles,rolebindings,serviceaccounts,pdb -o name 2>/dev/null | grep -v -e '^configmap/kube-root-ca.crt$' -e '^serviceaccount/default$' || true)"
  [[ -z "$left" ]] || fail "left after helm uninstall: $(tr '\n' ' ' <<<"$left")"
}

run_test() {
  local name="$1" rc t
  log "=== $name"
  t=$(date +%s)
  set +e
  (
    set -eE
    trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR
    trap 'jobs -p | xargs -r kill 2>/dev/null' EXIT # a creator loop left running
    "test_$name"
  )
  rc=$?
  set -e
  if [[ $rc == 0 ]]; then
    PASSED+=("$name"); log "--- ok: $name ($(($(date +%s) - t))s)"
  else
    FAILED+=("$name"); log "--- FAILED: $name ($(($(date +%s) - t))s)"
  fi
}

ALL=(install auto_workloads availability node_upgrade helm_upgrade uninstall)
PASSED=() FAILED=()
[[ $# -gt 0 ]] || set -- "${ALL[@]}"
for t in "$@"; do
  declare -F "test_$t" >/dev/null || die "no test '$t' (tests: ${ALL[*]})"
  run_test "$t"
done
echo "journey: ${#PASSED[@]} passed, ${#FAILED[@]} failed${FAILED[*]:+ (${FAILED[*]})}"
[[ ${#FAILED[@]} == 0 ]]
