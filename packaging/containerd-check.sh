#!/usr/bin/env bash
# Imports the images packaging/build.sh wrote (dist/*.oci.tar) into a private containerd
# (its own root, state and socket under a temporary folder; started here, stopped at the
# end) with `ctr`, and runs them there:
#   tandem       `tandem --version` (or `tandem version` when the build has it)
#   tandem-shim  the `shim.delivery: copy` step: `/tandem-shim install /out/tandem-shim`
#                into an empty folder, then checks the copy is the image's binary.
# Needs Debian's containerd (containerd, ctr, runc) and root.
# Usage: packaging/containerd-check.sh [DIST]   (default dist/)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/packaging/lib.sh"
DIST="${1:-$ROOT/dist}"
for t in containerd ctr runc; do command -v "$t" >/dev/null || die "$t is missing (apt-get install containerd)"; done
for i in tandem tandem-shim; do
  [[ -f "$DIST/$i-$IMAGE_TAG.oci.tar" ]] || die "$DIST/$i-$IMAGE_TAG.oci.tar is missing: run packaging/build.sh"
done

D="$(mktemp -d /tmp/tandem-ctrd.XXXXXX)"
SOCK="$D/containerd.sock"
cat >"$D/config.toml" <<TOML
version = 2
root = "$D/root"
state = "$D/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$D/opt"
TOML
containerd --config "$D/config.toml" --log-level warn >"$D/containerd.log" 2>&1 &
CPID=$!
cleanup() {
  local rc=$?
  ctr -a "$SOCK" -n tandem tasks ls -q 2>/dev/null | while read -r t; do ctr -a "$SOCK" -n tandem tasks kill -s KILL "$t" 2>/dev/null || true; done
  kill -TERM "$CPID" 2>/dev/null || true
  wait "$CPID" 2>/dev/null || true
  # A task's rootfs can stay mounted after containerd stops: unmount whatever is left
  # under the state dir (deepest first) before removing it.
  awk -v d="$D" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [[ $rc == 0 ]]; then
    rm -rf "$D" || log "could not remove $D"
  else
    log "containerd state kept in $D (log: $D/containerd.log)"
  fi
  exit "$rc"
}
trap cleanup EXIT
for _ in $(seq 1 60); do ctr -a "$SOCK" version >/dev/null 2>&1 && break; sleep 0.5; done
ctr -a "$SOCK" version >/dev/null || die "containerd did not come up: $(tail -5 "$D/containerd.log")"
c() { ctr -a "$SOCK" -n tandem "$@"; }
SNAP="${TANDEM_CTR_SNAPSHOTTER:-native}"

for i in tandem tandem-shim; do
  c images import --snapshotter "$SNAP" "$DIST/$i-$IMAGE_TAG.oci.tar" >&2
done
c images ls

# tandem: print its version (entrypoint kept, the arguments replace the command).
TANDEM="$(image_name tandem)"
if c run --rm --snapshotter "$SNAP" "$TANDEM" tandem-help /tandem --help 2>/dev/null | grep -q '^  version'; then
  ver_args=(version)
else
  ver_args=(--version)
fi
out="$(c run --rm --snapshotter "$SNAP" "$TANDEM" tandem-version /tandem "${ver_args[@]}")"
log "tandem image: \`tandem ${ver_args[*]}\` printed: $out"
grep -q "$VERSION" <<<"$out" || die "tandem ${ver_args[*]} did not print $VERSION"

# tandem-shim: the copy step of `shim.delivery: copy` into an empty folder (like the
# injected init container into its emptyDir), as uid 65532.
SHIM="$(image_name tandem-shim)"
mkdir -m 0777 "$D/empty"
c run --rm --snapshotter "$SNAP" --mount "type=bind,src=$D/empty,dst=/out,options=rbind:rw" \
  "$SHIM" shim-copy /tandem-shim install /out/tandem-shim >&2
[[ -x "$D/empty/tandem-shim" ]] || die "the shim was not copied"
owner="$(stat -c %u:%g "$D/empty/tandem-shim")"
[[ "$owner" == 65532:65532 ]] || die "the copy is owned by $owner, expected 65532:65532 (the image's user)"
cmp "$D/empty/tandem-shim" "$DIST/bin/tandem-shim" || die "the copy differs from the image's binary"
log "tandem-shim image: copied /tandem-shim into an empty folder ($(stat -c %s "$D/empty/tandem-shim") bytes, mode $(stat -c %a "$D/empty/tandem-shim"), owner $owner), identical to dist/bin/tandem-shim"
"$D/empty/tandem-shim" --help 2>&1 | head -1 >&2 || true
log "containerd check passed"
