#!/usr/bin/env bash
# Checks that the images are byte-for-byte reproducible: builds both images twice from
# the same static binaries into two fresh folders (a different temporary path, umask and
# time each run) and compares every digest and every tar. Exit 1 on any difference.
# Usage: packaging/reproducible.sh   (compiles the static binaries first when missing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/packaging/lib.sh"
STATIC_DIR="${TANDEM_STATIC_TARGET:-$ROOT/target/static}"
flag=--no-compile
[[ -x "$STATIC_DIR/x86_64-unknown-linux-gnu/release/tandem" && -x "$STATIC_DIR/shim/x86_64-unknown-linux-gnu/release/tandem-shim" ]] || flag=""
a="$(mktemp -d)"; b="$(mktemp -d)"
trap 'rm -rf "$a" "$b"' EXIT
t0=$(date +%s)
(umask 022; bash "$ROOT/packaging/build.sh" $flag --out "$a/one" >/dev/null)
t1=$(date +%s)
sleep 1 # a different wall-clock second: nothing may depend on it
(umask 077; bash "$ROOT/packaging/build.sh" --no-compile --out "$b/two/deeper" >/dev/null)
t2=$(date +%s)
fail=0
for f in "tandem-$IMAGE_TAG.oci.tar" "tandem-shim-$IMAGE_TAG.oci.tar" digests.txt; do
  x="$(sha "$a/one/$f")"; y="$(sha "$b/two/deeper/$f")"
  if [[ "$x" == "$y" ]]; then log "same   $f sha256:$x"; else log "DIFFER $f $x $y"; fail=1; fi
done
cat "$a/one/digests.txt"
log "first build $((t1 - t0))s, second (image assembly only) $((t2 - t1 - 1))s"
[[ $fail == 0 ]] || die "the two builds differ"
log "reproducible: both builds gave identical bytes"
