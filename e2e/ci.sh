#!/usr/bin/env bash
# The one command CI (and a developer) runs for tandem's end-to-end tests: installs the
# few Debian packages the scripts need when missing, builds the control plane from source
# (cached in ${TANDEM_CACHE:-~/.cache/tandem}, minutes cold, seconds warm), brings it up
# on 127.0.0.1, runs the ignored tests of tandem-e2e one at a time, and always tears the
# control plane down again. It runs the ignored tests of every workspace package (they are
# the ones that need a control plane). Extra arguments go to the test binaries (e.g. a
# test name filter).
set -euo pipefail
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/.." && pwd)"
# Its own state dir and ports, so that it never stops a control plane a developer (or
# another session in the same tree) keeps up at the defaults (e2e/.state, 26400).
export TANDEM_E2E_STATE="${TANDEM_E2E_STATE:-$E2E_DIR/.state-ci}"
export TANDEM_E2E_PORT_BASE="${TANDEM_E2E_PORT_BASE:-22400}"
source "$E2E_DIR/cluster/lib.sh"

# --- tools: openssl and curl from Debian; Go must be there (the machine image has it).
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]}"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || die "Go is needed to build the control plane (go 1.25+)"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

t0=$(date +%s)
bash "$E2E_DIR/cluster/build.sh" all
t1=$(date +%s)

cleanup() {
  local rc=$?
  if [[ $rc != 0 && -d "$LOG_DIR" ]]; then
    for f in "$LOG_DIR"/*.log; do
      echo "----- last lines of $f" >&2
      tail -n 40 "$f" >&2 || true
    done
  fi
  bash "$E2E_DIR/cluster/down.sh" || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash "$E2E_DIR/cluster/up.sh"
t2=$(date +%s)
cd "$ROOT"
# Every package's ignored tests are the ones that need this control plane (tandem-e2e's
# and the e2e_* tests of the other crates); TANDEM_E2E_CARGO_ARGS="-p tandem-e2e" narrows.
read -r -a cargo_args <<<"${TANDEM_E2E_CARGO_ARGS:---workspace}"
# --tests: unit and integration tests, no doc tests (--ignored would run `ignore`d examples).
cargo test "${cargo_args[@]}" --tests --no-run
t3=$(date +%s)
TANDEM_E2E_NO_START=1 cargo test "${cargo_args[@]}" --tests -- --ignored --test-threads=1 "$@"
t4=$(date +%s)
log "e2e timings: build $((t1 - t0))s, control plane up $((t2 - t1))s, test compile $((t3 - t2))s, tests $((t4 - t3))s"
