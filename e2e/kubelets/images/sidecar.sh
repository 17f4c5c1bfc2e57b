#!/bin/sh
# e2e test sidecar: appends to /e2e/events when it starts (with the tandem-shim state it
# started under, which tells the acting copy), when it is ready, and when it gets SIGTERM
# (and whether the app had exited by then). Runs until SIGTERM/SIGINT.
E="${E2E_DIR:-/e2e}"
ev() { echo "$(cut -d' ' -f1 /proc/uptime) sidecar $*" >>"$E/events"; echo "e2e-sidecar: $*"; }
state="$(cut -d' ' -f2 "${TANDEM_STATE_DIR:-/var/run/tandem}/state" 2>/dev/null)"
ev "start state=${state:-none}"
stop() {
  if [ -e "$E/app-exited" ]; then a=yes; else a=no; fi
  ev "sigterm app-exited=$a"
  exit 0
}
trap stop TERM INT
touch "$E/sidecar-ready"
ev ready
while :; do sleep 1 & wait $!; done
