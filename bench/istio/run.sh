#!/usr/bin/env bash
# tandem inject beside a peer: `istioctl kube-inject` built from the Go module proxy
# (istio.io/istio at a pinned pseudo-version: the proxy serves no tagged release of that
# module), on the same corpus of Deployments, one run each per size, printing documents/s
# and peak RSS of both. istioctl works offline with the injector's three files, which
# `istioctl manifest generate` writes (inside its ConfigMaps) and --revision default
# (without it, it looks for a cluster and hangs).
#
# Usage: bench/istio/run.sh [WORKLOADS...]   (default: 1000 10000)
# Environment: TANDEM_ISTIO_VERSION (module version), TANDEM_CACHE (~/.cache/tandem).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/e2e/cluster/lib.sh"
ISTIO_VERSION="${TANDEM_ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}"
ISTIOCTL="$(bin_path istioctl "$ISTIO_VERSION")"
command -v yq >/dev/null || {
  log "installing yq (Debian's, a jq wrapper)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq yq >/dev/null
}

if [[ ! -x "$ISTIOCTL" ]]; then
  log "building istioctl $ISTIO_VERSION (go install; minutes on a cold cache)"
  t0=$(date +%s)
  mkdir -p "$BIN_DIR"
  tmp="$(mktemp -d)"
  GOBIN="$tmp" CGO_ENABLED=0 nice -n 10 go install -trimpath -ldflags="-s -w" \
    "istio.io/istio/istioctl/cmd/istioctl@$ISTIO_VERSION"
  mv "$tmp/istioctl" "$ISTIOCTL"
  rm -rf "$tmp"
  log "built istioctl in $(($(date +%s) - t0))s"
fi

W="$(mktemp -d /tmp/tandem-istio-bench.XXXXXX)"
trap 'rm -rf "$W"' EXIT
# The injector's files, from the default profile's manifests (offline).
"$ISTIOCTL" manifest generate --set profile=default >"$W/manifests.yaml" 2>/dev/null
yq -r 'select(.kind == "ConfigMap" and .metadata.name == "istio-sidecar-injector") | .data.config' "$W/manifests.yaml" >"$W/inject-config.yaml"
yq -r 'select(.kind == "ConfigMap" and .metadata.name == "istio-sidecar-injector") | .data.values' "$W/manifests.yaml" >"$W/values.json"
yq -r 'select(.kind == "ConfigMap" and .metadata.name == "istio") | .data.mesh' "$W/manifests.yaml" >"$W/mesh.yaml"
for f in inject-config.yaml values.json mesh.yaml; do
  [[ -s "$W/$f" && "$(head -c 4 "$W/$f")" != null ]] || die "istioctl manifest generate gave no $f"
done

(cd "$ROOT" && cargo build --release -q -p tandem -p tandem-bench)
TANDEM="$ROOT/target/release/tandem"
measure() { # measure <label> <docs> <cmd...>: one line: docs/s, wall, CPU, peak RSS
  local label="$1" docs="$2" wall user sys kib; shift 2
  /usr/bin/time -o "$W/time" -f '%e %U %S %M' "$@" >"$W/out" 2>"$W/err" ||
    die "$label failed: $(tail -3 "$W/err")"
  read -r wall user sys kib <"$W/time"
  awk -v l="$label" -v d="$docs" -v w="$wall" -v u="$user" -v s="$sys" -v k="$kib" \
    'BEGIN { printf "%-30s %8d docs  %7.2f s wall  %6.2f s CPU  %9.0f docs/s  %7.1f MiB peak\n", l, d, w, u + s, (w > 0 ? d / w : 0), k / 1024 }'
}
for n in "${@:-1000 10000}"; do
  for size in $n; do
    "$ROOT/target/release/inject-bench" corpus "$size" >"$W/corpus.yaml"
    log "corpus: $size Deployments, $(($(stat -c %s "$W/corpus.yaml") / 1024)) KiB"
    measure "tandem inject --mode native" "$size" "$TANDEM" inject -f "$W/corpus.yaml" --mode native -q
    measure "istioctl kube-inject" "$size" "$ISTIOCTL" kube-inject -f "$W/corpus.yaml" \
      --injectConfigFile "$W/inject-config.yaml" --meshConfigFile "$W/mesh.yaml" \
      --valuesFile "$W/values.json" --revision default
  done
done
