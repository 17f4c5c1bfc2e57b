#!/bin/sh
# e2e test app: appends to /e2e/events whether the sidecar was ready when it started,
# then runs APP_SECONDS (or until SIGTERM when APP_SECONDS=forever). With APP_FAIL_FIRST=1
# its first run exits 1 (for restartPolicy OnFailure), later runs exit 0.
E="${E2E_DIR:-/e2e}"
ev() { echo "$(cut -d' ' -f1 /proc/uptime) app $*" >>"$E/events"; echo "e2e-app: $*"; }
if [ -e "$E/sidecar-ready" ]; then r=yes; else r=no; fi
runs=$(( $(cat "$E/app-runs" 2>/dev/null || echo 0) + 1 )); echo "$runs" >"$E/app-runs"
ev "start sidecar-ready=$r run=$runs"
code=0
[ "${APP_FAIL_FIRST:-0}" = 1 ] && [ "$runs" = 1 ] && code=1
finish() { touch "$E/app-exited"; ev "exit code=$1"; exit "$1"; }
trap 'finish 0' TERM INT
if [ "${APP_SECONDS:-3}" = forever ]; then
  while :; do sleep 1 & wait $!; done
fi
sleep "${APP_SECONDS:-3}"
finish "$code"
