#!/usr/bin/env bash
# Fills tandem.yaml.tmpl: render.sh VERSION DIST_DIR > tandem.yaml
# DIST_DIR holds kubectl-tandem_vVERSION_<os>_<arch>.tar.gz (each with the `tandem` binary
# renamed kubectl-tandem, and LICENSE). A platform whose archive is missing is an error.
set -euo pipefail
version=${1:?usage: render.sh VERSION DIST_DIR}
dist=${2:?usage: render.sh VERSION DIST_DIR}
version=${version#v}
here=$(cd "$(dirname "$0")" && pwd)
out=$(sed "s/{{VERSION}}/$version/g" "$here/tandem.yaml.tmpl")
for platform in linux_amd64 linux_arm64 darwin_arm64; do
  archive="$dist/kubectl-tandem_v${version}_${platform}.tar.gz"
  [ -f "$archive" ] || { echo "render.sh: missing $archive" >&2; exit 1; }
  sum=$(sha256sum "$archive" | cut -d' ' -f1)
  key="SHA256_$(echo "$platform" | tr '[:lower:]' '[:upper:]')"
  out=${out//"{{$key}}"/$sum}
done
printf '%s\n' "$out"
