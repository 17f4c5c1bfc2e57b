# Shared by packaging/*.sh (sourced): image names from the one place, build metadata,
# and the reproducible OCI image writer.
# shellcheck shell=bash

log() { printf '[tandem-packaging %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

# The one place: crates/core/src/images.rs (registry) and the workspace version (tag).
IMAGES_RS="$ROOT/crates/core/src/images.rs"
default_registry="$(grep -A3 'macro_rules! registry' "$IMAGES_RS" | grep -o '"[^"]*"' | head -1 | tr -d '"')"
default_source="$(sed -n 's/^pub const SOURCE: &str = "\([^"]*\)";.*/\1/p' "$IMAGES_RS")"
[[ -n "$default_registry" && -n "$default_source" ]] || die "could not read the registry/source from $IMAGES_RS"
VERSION="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
[[ -n "$VERSION" ]] || die "no [workspace.package] version in Cargo.toml"
REGISTRY="${TANDEM_IMAGE_REGISTRY:-$default_registry}"
IMAGE_TAG="${TANDEM_IMAGE_TAG:-$VERSION}"
TANDEM_REPO="$REGISTRY/tandem"
SHIM_REPO="$REGISTRY/tandem-shim"
SOURCE_URL="$default_source"
image_name() { printf '%s/%s:%s' "$REGISTRY" "$1" "$IMAGE_TAG"; }

# Build metadata from git: the revision and the commit's time (created, and the mtime
# of every file in the images).
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  REVISION="$REVISION-dirty"
fi
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"
CREATED="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
export SOURCE_DATE_EPOCH

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# det_tar <dir> <out>: a tar of dir's contents that depends only on names, modes and
# bytes (sorted, owner 0:0, mtime SOURCE_DATE_EPOCH, ustar: no pax times).
det_tar() {
  (cd "$1" && find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
    tar --no-recursion --format=ustar --owner=0 --group=0 --numeric-owner \
      --mtime="@$SOURCE_DATE_EPOCH" -cf - -T -) >"$2"
}

# oci_image <repository> <tag> <rootfs> <entrypoint json> <description> <layout dir> <tar>
oci_image() {
  local repo="$1" tag="$2" rootfs="$3" entry="$4" desc="$5" layout="$6" out="$7"
  local blobs="$layout/blobs/sha256" tmp layer diff ld cfg cd man md ann
  rm -rf "$layout"; mkdir -p "$blobs"
  tmp="$(mktemp -d)"
  det_tar "$rootfs" "$tmp/layer.tar"
  diff="$(sha "$tmp/layer.tar")"
  gzip -n -9 <"$tmp/layer.tar" >"$tmp/layer.tar.gz"
  ld="$(sha "$tmp/layer.tar.gz")"; mv "$tmp/layer.tar.gz" "$blobs/$ld"
  ann="$(jq -cn --arg src "$SOURCE_URL" --arg ver "$tag" --arg rev "$REVISION" \
    --arg created "$CREATED" --arg title "${repo##*/}" --arg desc "$desc" \
    '{"org.opencontainers.image.created":$created,"org.opencontainers.image.description":$desc,
      "org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.revision":$rev,
      "org.opencontainers.image.source":$src,"org.opencontainers.image.title":$title,
      "org.opencontainers.image.version":$ver}')"
  jq -cnj --arg created "$CREATED" --argjson entry "$entry" --arg diff "sha256:$diff" \
    --argjson labels "$ann" \
    '{"created":$created,"architecture":"amd64","os":"linux",
      "config":{"User":"65532:65532","Entrypoint":$entry,"Env":["PATH=/"],"WorkingDir":"/","Labels":$labels},
      "rootfs":{"type":"layers","diff_ids":[$diff]},
      "history":[{"created":$created,"created_by":"packaging/build.sh"}]}' >"$tmp/config.json"
  cd="$(sha "$tmp/config.json")"; cfg="$blobs/$cd"; mv "$tmp/config.json" "$cfg"
  jq -cnj --arg cd "sha256:$cd" --argjson cs "$(size "$cfg")" --arg ld "sha256:$ld" \
    --argjson ls "$(size "$blobs/$ld")" --argjson ann "$ann" \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
      "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":$cd,"size":$cs},
      "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":$ld,"size":$ls}],
      "annotations":$ann}' >"$tmp/manifest.json"
  md="$(sha "$tmp/manifest.json")"; man="$blobs/$md"; mv "$tmp/manifest.json" "$man"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  jq -cnj --arg md "sha256:$md" --argjson ms "$(size "$man")" --arg name "$repo:$tag" --arg tag "$tag" \
    '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
      "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":$md,"size":$ms,
        "platform":{"architecture":"amd64","os":"linux"},
        "annotations":{"io.containerd.image.name":$name,"org.opencontainers.image.ref.name":$tag}}]}' \
    >"$layout/index.json"
  find "$layout" -type d -exec chmod 0755 {} + ; find "$layout" -type f -exec chmod 0644 {} +
  det_tar "$layout" "$out"
  rm -rf "$tmp"
  log "$repo:$tag sha256:$md ($(size "$out") bytes) -> $out"
}

# manifest_digest <layout dir>
manifest_digest() { jq -r '.manifests[0].digest' "$1/index.json"; }
