#!/usr/bin/env bash
# Builds tandem's two container images without Docker, byte for byte reproducibly:
#   tandem       entrypoint /tandem (webhook, label-nodes, doctor), uid/gid 65532, no shell
#   tandem-shim  entrypoint /tandem-shim (what `shim.delivery: copy` copies from)
# from static binaries (gnu target, +crt-static, as crates/shim/build-static.sh), each as
# an OCI image layout (dist/oci/<image>/) and an OCI tar (dist/<image>-<version>.oci.tar),
# with OCI annotations (source, version, revision, created = the commit's time).
# Names and tags come from crates/core/src/images.rs (the one place).
#
# Usage: packaging/build.sh [--no-compile] [--out DIR]
#   --no-compile  reuse the static binaries already built (TANDEM_STATIC_TARGET)
#   --out DIR     where to write (default: dist/ at the repository's root)
# Environment: TANDEM_STATIC_TARGET (cargo target dir of the static build, default
#   target/static), SOURCE_DATE_EPOCH (default: the commit time of HEAD),
#   TANDEM_IMAGE_REGISTRY / TANDEM_IMAGE_TAG (override the names, e.g. your registry).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/packaging/lib.sh"

compile=1
OUT="$ROOT/dist"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-compile) compile=0 ;;
    --out) OUT="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

TARGET=x86_64-unknown-linux-gnu
STATIC_DIR="${TANDEM_STATIC_TARGET:-$ROOT/target/static}"
BIN="$STATIC_DIR/$TARGET/release"

SHIM_BIN="$STATIC_DIR/shim/$TARGET/release"
if [[ $compile == 1 ]]; then
  t0=$(date +%s)
  # Reproducible binaries: no absolute paths of this machine in them (panic messages),
  # static glibc, stripped.
  remap="--remap-path-prefix=$ROOT=/src --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
  (cd "$ROOT" &&
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C strip=symbols $remap" \
    CARGO_TARGET_DIR="$STATIC_DIR" \
      nice -n 10 cargo build --release --locked -p tandem --target "$TARGET")
  # The shim with its own size settings (opt-level z, fat LTO, panic=abort).
  RUSTFLAGS="${RUSTFLAGS:-} $remap" CARGO_TARGET_DIR="$STATIC_DIR/shim" \
    nice -n 10 bash "$ROOT/crates/shim/build-static.sh" >&2
  log "static binaries built in $(($(date +%s) - t0))s"
fi
for b in "$BIN/tandem" "$SHIM_BIN/tandem-shim"; do
  [[ -x "$b" ]] || die "$b is missing: run without --no-compile"
  if readelf -d "$b" 2>/dev/null | grep -q NEEDED; then die "$b is not static"; fi
done

mkdir -p "$OUT/oci" "$OUT/bin"
# The binaries, also the build context of packaging/Containerfile.
install -m 0755 "$BIN/tandem" "$SHIM_BIN/tandem-shim" "$OUT/bin/"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# tandem: /tandem, owned by root, run as 65532:65532 (nothing else: no shell, no libc).
mkdir -p "$work/tandem"
install -m 0755 "$BIN/tandem" "$work/tandem/tandem"
oci_image "$TANDEM_REPO" "$IMAGE_TAG" "$work/tandem" '["/tandem"]' \
  "tandem: sidecar injection for native sidecar containers (webhook, label-nodes, doctor)" \
  "$OUT/oci/tandem" "$OUT/tandem-$IMAGE_TAG.oci.tar"

# tandem-shim: /tandem-shim, what the injected init container runs as
# `/tandem-shim install <dir>/tandem-shim`.
mkdir -p "$work/tandem-shim"
install -m 0755 "$SHIM_BIN/tandem-shim" "$work/tandem-shim/tandem-shim"
oci_image "$SHIM_REPO" "$IMAGE_TAG" "$work/tandem-shim" '["/tandem-shim"]' \
  "tandem-shim: the native/legacy sidecar handshake, copied into pods by tandem" \
  "$OUT/oci/tandem-shim" "$OUT/tandem-shim-$IMAGE_TAG.oci.tar"

{
  for i in tandem tandem-shim; do
    printf '%s\t%s\t%s\n' "$(image_name "$i")" "$(manifest_digest "$OUT/oci/$i")" "$(stat -c %s "$OUT/$i-$IMAGE_TAG.oci.tar")"
  done
} >"$OUT/digests.txt"
cat "$OUT/digests.txt"
