#!/usr/bin/env bash
# Builds the e2e control plane from source with Go, through the Go module proxy only:
# kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes at a
# pinned release (a tiny main.go per binary; every k8s.io/* staging module pinned to the
# matching v0.X.Y by replace directives; the version stamped with -ldflags -X), the old
# release's kube-apiserver, etcd (wrapper main around etcdmain.Main) and kwok.
# Binaries land in ${TANDEM_CACHE:-~/.cache/tandem}/bin/<component>-<version>; a binary
# already there is not built again. Go's module and build caches stay at their defaults.
#
# Usage: build.sh                      # everything the e2e tests need
#        build.sh k8s v1.37.2          # apiserver + controller-manager + scheduler
#        build.sh apiserver v1.32.13   # kube-apiserver only
#        build.sh etcd v3.6.16 | build.sh kwok v0.8.0
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v go >/dev/null || die "go is not installed"
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
TIMES="$CACHE_DIR/build-times.log"
# Be gentle with the other builds on a 2-core machine.
GO_BUILD=(nice -n 10 go build -p "${TANDEM_GO_PARALLEL:-2}" -trimpath)
export CGO_ENABLED=0

now() { date +%s; }
record() { # record <what> <start>
  local secs=$(($(now) - $2))
  log "built $1 in ${secs}s"
  printf '%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "$1" "$secs" >>"$TIMES"
}

# The module directory for one Kubernetes release: go.mod with replace directives.
k8s_module() {
  local ver="$1" minor patch dir gomod
  local v="${ver#v}"
  minor="${v#*.}"; minor="${minor%%.*}"; patch="${v##*.}"
  dir="$CACHE_DIR/src/kubernetes-$ver"
  if [[ -f "$dir/.ready" ]]; then printf '%s' "$dir"; return; fi
  mkdir -p "$dir"
  (
    cd "$dir"
    gomod="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
    [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$ver"
    local gover
    gover="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$gomod" | head -1)"
    {
      echo "module tandem.dev/e2e/kubernetes"
      echo
      echo "go $gover"
      echo
      echo "require k8s.io/kubernetes $ver"
      echo
      echo "replace ("
      # Every staging module that upstream replaces with ./staging/src/... is pinned
      # to its published v0.<minor>.<patch> instead.
      sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9.-]*\) => ./staging/.*|\1|p' "$gomod" | sort -u |
        while read -r m; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done
      echo ")"
    } >go.mod
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
      mkdir -p "cmd/$c"
    done
    local imports='"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"'
    cat >cmd/kube-apiserver/main.go <<GO
// Command kube-apiserver is upstream's, built from k8s.io/kubernetes $ver.
package main

import (
	$imports
	_ "time/tzdata"

	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
    cat >cmd/kube-controller-manager/main.go <<GO
// Command kube-controller-manager is upstream's, built from k8s.io/kubernetes $ver.
package main

import (
	$imports
	_ "time/tzdata"

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() { os.Exit(cli.Run(app.NewControllerManagerCommand())) }
GO
    cat >cmd/kube-scheduler/main.go <<GO
// Command kube-scheduler is upstream's, built from k8s.io/kubernetes $ver.
package main

import (
	$imports

	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() { os.Exit(cli.Run(app.NewSchedulerCommand())) }
GO
    go mod tidy >&2
    touch .ready
  )
  printf '%s' "$dir"
}

k8s_ldflags() {
  local ver="$1" v minor
  v="${ver#v}"; minor="${v#*.}"; minor="${minor%%.*}"
  local date; date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  printf '%s' "${TANDEM_EXTRA_LDFLAGS:+$TANDEM_EXTRA_LDFLAGS }$flags"
}

build_k8s() { # build_k8s <version> <component>...
  local ver="$1"; shift
  local todo=() c
  for c in "$@"; do
    [[ -x "$(bin_path "$c" "$ver")" ]] || todo+=("$c")
  done
  [[ ${#todo[@]} -gt 0 ]] || { log "kubernetes $ver: $* cached"; return; }
  local start dir; start=$(now)
  dir="$(k8s_module "$ver")"
  for c in "${todo[@]}"; do
    local t; t=$(now)
    log "building $c $ver (this takes minutes on a cold cache)"
    (cd "$dir" && "${GO_BUILD[@]}" -ldflags "$(k8s_ldflags "$ver")" -o "$(bin_path "$c" "$ver").tmp" "./cmd/$c")
    mv "$(bin_path "$c" "$ver").tmp" "$(bin_path "$c" "$ver")"
    record "$c-$ver" "$t"
  done
  record "kubernetes-$ver(${todo[*]})" "$start"
}

build_etcd() {
  local ver="$1" out; out="$(bin_path etcd "$ver")"
  [[ -x "$out" ]] && { log "etcd $ver cached"; return; }
  local start; start=$(now)
  local dir="$CACHE_DIR/src/etcd-$ver"
  mkdir -p "$dir"
  (
    cd "$dir"
    cat >go.mod <<GO
module tandem.dev/e2e/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ver
GO
    cat >main.go <<'GO'
// Command etcd is upstream's etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go mod tidy >&2
    "${GO_BUILD[@]}" -ldflags "-s -w" -o "$out.tmp" .
    mv "$out.tmp" "$out"
  )
  record "etcd-$ver" "$start"
}

build_kwok() {
  local ver="$1" out; out="$(bin_path kwok "$ver")"
  [[ -x "$out" && -f "$(bin_path kwok-stages "$ver").yaml" ]] && { log "kwok $ver cached"; return; }
  local start; start=$(now)
  local gobin="$CACHE_DIR/src/kwok-$ver"
  mkdir -p "$gobin"
  GOBIN="$gobin" nice -n 10 go install -p "${TANDEM_GO_PARALLEL:-2}" -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$ver"
  # kwok run as a bare process needs its stages: take upstream's default set
  # (what kwokctl uses) from the same module version.
  local moddir
  moddir="$(cd "$gobin" && go mod download -json "sigs.k8s.io/kwok@$ver" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')"
  local f first=1
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ $first == 1 ]] || echo "---"
    first=0
    cat "$moddir/kustomize/stage/$f"
  done >"$(bin_path kwok-stages "$ver").yaml"
  mv "$gobin/kwok" "$out"
  record "kwok-$ver" "$start"
}

case "${1:-all}" in
  all)
    build_etcd "$ETCD_VERSION"
    build_kwok "$KWOK_VERSION"
    build_k8s "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler
    build_k8s "$K8S_OLD_VERSION" kube-apiserver
    ;;
  current) build_etcd "$ETCD_VERSION"; build_kwok "$KWOK_VERSION"
    build_k8s "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler ;;
  k8s) build_k8s "${2:-$K8S_VERSION}" kube-apiserver kube-controller-manager kube-scheduler ;;
  apiserver) build_k8s "${2:-$K8S_OLD_VERSION}" kube-apiserver ;;
  etcd) build_etcd "${2:-$ETCD_VERSION}" ;;
  kwok) build_kwok "${2:-$KWOK_VERSION}" ;;
  *) die "unknown target '$1' (all|current|k8s|apiserver|etcd|kwok)" ;;
esac
