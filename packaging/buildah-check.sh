#!/usr/bin/env bash
# Builds both images with packaging/Containerfile through buildah (no daemon, vfs storage,
# a private storage root under a temporary folder) and compares each image's files with
# the ones packaging/build.sh wrote: names, modes, owners, sizes and bytes, plus the
# entrypoint and user. Exit 1 on any difference.
# Needs Debian's buildah and a finished packaging/build.sh (dist/).
# Usage: packaging/buildah-check.sh [DIST]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/packaging/lib.sh"
DIST="${1:-$ROOT/dist}"
command -v buildah >/dev/null || die "buildah is missing (apt-get install buildah)"
W="$(mktemp -d /tmp/tandem-buildah.XXXXXX)"
B=(buildah --storage-driver vfs --root "$W/root" --runroot "$W/run")
cleanup() { "${B[@]}" rmi --all --force >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT

# files <oci layout>: one line per file of the (single-layer) image: mode owner size sha name
files() {
  local layout="$1" m l d
  m="$(jq -r '.manifests[0].digest' "$layout/index.json" | cut -d: -f2)"
  mkdir -p "$W/x"; rm -rf "$W/x"/*
  for l in $(jq -r '.layers[].digest' "$layout/blobs/sha256/$m" | cut -d: -f2); do
    tar -C "$W/x" -xf "$layout/blobs/sha256/$l" --no-same-owner
    tar -tvf "$layout/blobs/sha256/$l" | awk '{print $1, $2, $3, $6}'
  done | sort | while read -r mode owner size name; do
    d=""; [[ -f "$W/x/$name" ]] && d="$(sha "$W/x/$name")"
    printf '%s %s %s %s %s\n' "$mode" "$owner" "$size" "${d:0:16}" "$name"
  done
}
# cfg <oci layout>: entrypoint and user
cfg() {
  local m c
  m="$(jq -r '.manifests[0].digest' "$1/index.json" | cut -d: -f2)"
  c="$(jq -r .config.digest "$1/blobs/sha256/$m" | cut -d: -f2)"
  jq -c '{Entrypoint: .config.Entrypoint, User: .config.User, Env: .config.Env, version: .config.Labels["org.opencontainers.image.version"]}' "$1/blobs/sha256/$c"
}

fail=0
for i in tandem tandem-shim; do
  t0=$(date +%s)
  "${B[@]}" bud -q --isolation chroot -f "$ROOT/packaging/Containerfile" --target "$i" \
    --build-arg VERSION="$IMAGE_TAG" --build-arg REVISION="$REVISION" --build-arg CREATED="$CREATED" \
    -t "localhost/$i:check" "$DIST/bin" >/dev/null
  "${B[@]}" push -q "localhost/$i:check" "oci:$W/oci-$i:check" >/dev/null
  log "$i: buildah bud + push in $(($(date +%s) - t0))s"
  a="$(files "$DIST/oci/$i")"; b="$(files "$W/oci-$i")"
  echo "  build.sh: $a"; echo "  buildah:  $b"
  ca="$(cfg "$DIST/oci/$i")"; cb="$(cfg "$W/oci-$i")"
  echo "  build.sh: $ca"; echo "  buildah:  $cb"
  # buildah stamps the build time on files: compare all but the time (not listed above).
  [[ "$a" == "$b" ]] || { log "DIFFER: $i files"; fail=1; }
  [[ "$ca" == "$cb" ]] || { log "DIFFER: $i config"; fail=1; }
done
[[ $fail == 0 ]] || die "the Containerfile's images differ from build.sh's"
log "buildah's images hold the same files, entrypoints and users as build.sh's"
