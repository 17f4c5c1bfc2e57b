#!/usr/bin/env bash
# Builds the e2e images without Docker, as OCI image layouts packed in tars, into
# $KSTATE/images: the pause image (a static C pause built here), tandem's image
# (tandem-shim, plus tandem when a static build exists), a test sidecar and a test app
# (busybox from Debian's busybox-static plus a shell script each).
# Usage: images.sh build                 # (re)build the tars
#        images.sh import <socket>       # import every tar into that containerd (k8s.io ns)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROOT="$(cd "$KUBELETS_DIR/../.." && pwd)"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# oci_image <name:tag> <rootfs dir> <entrypoint json> <out tar>: a one-layer image.
oci_image() {
  local name="$1" rootfs="$2" entry="$3" out="$4" work layer ld cfg cd man md
  work="$(mktemp -d)"
  mkdir -p "$work/oci/blobs/sha256"
  layer="$work/layer.tar"
  tar -C "$rootfs" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$layer" .
  ld="$(sha "$layer")"; mv "$layer" "$work/oci/blobs/sha256/$ld"
  cfg="$work/config.json"
  printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"tandem e2e/kubelets/images.sh"}]}' "$entry" "$ld" >"$cfg"
  cd="$(sha "$cfg")"; mv "$cfg" "$work/oci/blobs/sha256/$cd"
  man="$work/manifest.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cd" "$(stat -c %s "$work/oci/blobs/sha256/$cd")" "$ld" "$(stat -c %s "$work/oci/blobs/sha256/$ld")" >"$man"
  md="$(sha "$man")"; local ms; ms="$(stat -c %s "$man")"; mv "$man" "$work/oci/blobs/sha256/$md"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$md" "$ms" "$name" "${name##*:}" >"$work/oci/index.json"
  tar -C "$work/oci" --owner=0 --group=0 --numeric-owner -cf "$out" .
  rm -rf "$work"
  log "image $name -> $out"
}

busybox_rootfs() { # busybox_rootfs <dir>: /bin/busybox and its applets as symlinks
  local d="$1" a
  mkdir -p "$d/bin" "$d/tmp" "$d/e2e" "$d/etc"
  cp /bin/busybox "$d/bin/busybox"
  for a in sh cat echo sleep date touch test ls cut tr mkdir rm env grep wc tee printf kill true false; do
    ln -sf busybox "$d/bin/$a"
  done
  chmod 1777 "$d/tmp"
  echo 'root:x:0:0:root:/:/bin/sh' >"$d/etc/passwd"
}

build() {
  command -v gcc >/dev/null || die "gcc is needed for the pause binary (apt-get install gcc libc6-dev)"
  if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
    die "/bin/busybox must be Debian's busybox-static"
  fi
  mkdir -p "$IMAGES_DIR"
  local tmp; tmp="$(mktemp -d)"
  # pause: what registry.k8s.io/pause does (sleep until a signal, reap orphans), static.
  mkdir -p "$tmp/pause"
  gcc -static -Os -o "$tmp/pause/pause" "$KUBELETS_DIR/pause.c"
  strip "$tmp/pause/pause"
  oci_image "$PAUSE_IMAGE" "$tmp/pause" '["/pause"]' "$IMAGES_DIR/pause.tar"

  # tandem's image: the static shim (and tandem itself when a static build exists).
  mkdir -p "$tmp/tandem"
  # Where crates/shim/build-static.sh puts it (its own target dir, target/shim-static).
  local shim="${TANDEM_SHIM_BIN:-$ROOT/target/shim-static/x86_64-unknown-linux-gnu/release/tandem-shim}"
  [[ -x "$shim" ]] || bash "$ROOT/crates/shim/build-static.sh" >&2
  cp "$shim" "$tmp/tandem/tandem-shim"
  local cli="${TANDEM_STATIC_CLI_BIN:-$ROOT/target/static-cli/x86_64-unknown-linux-gnu/release/tandem}"
  if [[ -x "$cli" ]] && ! readelf -d "$cli" 2>/dev/null | grep -q NEEDED; then
    cp "$cli" "$tmp/tandem/tandem"
  else
    log "no static tandem CLI at $cli: tandem's image holds only tandem-shim (all the pods need)"
  fi
  chmod 0755 "$tmp/tandem"/*
  oci_image tandem.local/tandem:e2e "$tmp/tandem" '["/tandem-shim"]' "$IMAGES_DIR/tandem.tar"

  busybox_rootfs "$tmp/sidecar"
  cp "$KUBELETS_DIR/images/sidecar.sh" "$tmp/sidecar/sidecar"; chmod 0755 "$tmp/sidecar/sidecar"
  oci_image tandem.local/e2e-sidecar:e2e "$tmp/sidecar" '["/sidecar"]' "$IMAGES_DIR/sidecar.tar"

  busybox_rootfs "$tmp/app"
  cp "$KUBELETS_DIR/images/app.sh" "$tmp/app/app"; chmod 0755 "$tmp/app/app"
  oci_image tandem.local/e2e-app:e2e "$tmp/app" '["/app"]' "$IMAGES_DIR/app.tar"
  rm -rf "$tmp"
}

import() { # import <containerd socket>
  local sock="$1" t
  for t in pause tandem sidecar app; do
    ctr -a "$sock" -n k8s.io images import --no-unpack=false "$IMAGES_DIR/$t.tar" >&2
  done
  ctr -a "$sock" -n k8s.io images ls -q >&2
}

case "${1:-build}" in
  build) build ;;
  import) import "${2:?socket}" ;;
  *) die "usage: images.sh build | import <socket>" ;;
esac
