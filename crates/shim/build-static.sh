#!/usr/bin/env bash
# Builds the statically linked, stripped release tandem-shim (runs in scratch or
# distroless images) and prints its size. Usage: crates/shim/build-static.sh [OUT]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
target=x86_64-unknown-linux-gnu
# Own target dir by default: the size flags would otherwise rebuild the
# workspace's shared release artifacts (and wait on their lock).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/shim-static}"
out="${1:-$CARGO_TARGET_DIR/$target/release/tandem-shim}"
cd "$root"
# crt-static on the gnu target: glibc linked in statically (the musl target is
# not installable here). The shim never calls NSS (no getpwnam/getaddrinfo on
# names other than the API server's IP), so static glibc is safe for it.
# Size settings for this one binary (the workspace's release profile is tuned for
# the other tools): optimise for size, fat LTO, one codegen unit, abort on panic.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
CARGO_PROFILE_RELEASE_LTO=fat \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
CARGO_PROFILE_RELEASE_PANIC=abort \
  cargo build --release --locked -p tandem-shim --target "$target"
bin="$CARGO_TARGET_DIR/$target/release/tandem-shim"
strip "$bin" 2>/dev/null || true
if [ "$out" != "$bin" ]; then cp "$bin" "$out"; fi
if command -v file >/dev/null; then file "$out"; fi
if readelf -d "$out" 2>/dev/null | grep -q NEEDED; then echo "warning: $out needs shared libraries" >&2; fi
printf 'size: %s bytes (%s KiB)\n' "$(stat -c %s "$out")" "$(( $(stat -c %s "$out") / 1024 ))"
