#!/usr/bin/env bash
# Load benchmark of tandem's webhook (see bench/README.md, "webhook"): builds the webhook
# (the `webhook` example of tandem-webhook: the same server as `tandem webhook`) and the
# load generator (crates/webhook/benches/webhook_load.rs) in release mode, pins the
# webhook to core 0 and the generator to core 1 with taskset, and reports latency
# percentiles at a fixed rate, a rate sweep, resident memory idle and with N nodes in
# the cache, and the binary size. Traffic stays on 127.0.0.1; every run is bounded.
#
#   bash bench/webhook-load/run.sh            # RATE=1000 SECONDS=20 NODES=10000 AUTO_RATE=2000
#   ONLY=auto,hostile bash bench/webhook-load/run.sh   # some sections: native, auto, hostile, path
#   SERVER=/path/to/old/webhook SKIP_BUILD=1 ...       # the same load against another build
#   KUBECONFIG=/tmp/tw-e2e/admin.kubeconfig WATCH=1 bash bench/webhook-load/run.sh
#       # also: RSS with the nodes watched from a real API server (creates NODES nodes)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
RATE="${RATE:-1000}"
SECS="${SECONDS_PER_RUN:-20}"
NODES="${NODES:-10000}"
SWEEP="${SWEEP:-1000,2000,3000,4000,5000,6000,8000}"
PORT="${PORT:-18443}"
AUTO_RATE="${AUTO_RATE:-2000}"
ONLY="${ONLY:-native,auto,hostile,path}"
want() { [[ ",$ONLY," == *",$1,"* ]]; }
# RT=1: both sides SCHED_FIFO (chrt) so that other work on the shared cores doesn't
# preempt them; the runs are bounded (seconds), and each side idles between requests.
PRIO=(); [[ "${RT:-0}" == 1 ]] && PRIO=(chrt -f 10)
WORK="$(mktemp -d)"
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

[[ "${SKIP_BUILD:-0}" == 1 ]] || cargo build --release -q -p tandem-webhook --example webhook --bench webhook_load --bench request_path
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER="${SERVER:-$TARGET/release/examples/webhook}"
LOAD="$(ls -t "$TARGET"/release/deps/webhook_load-* | grep -v '\.d$' | head -1)"
PATHBENCH="$(ls -t "$TARGET"/release/deps/request_path-* | grep -v '\.d$' | head -1)"
echo "binary: $(du -h "$SERVER" | cut -f1) ($SERVER)"

rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }

start() { # args...
  "${PRIO[@]}" taskset -c 0 "$SERVER" --listen "127.0.0.1:$PORT" --log-format json "$@" >"$WORK/ca.pem" 2>"$WORK/server.log" &
  PID=$!
  for _ in $(seq 50); do [[ -s "$WORK/ca.pem" ]] && break; sleep 0.1; done
  sleep 0.5
}
stop() { kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
server_hist() { # the server's own view: time in the handler, from /metrics
  curl -sk "https://127.0.0.1:$PORT/metrics" | grep -E 'request_duration_seconds_(bucket|sum|count)\{.*outcome="injected"' |
    awk '/_sum/ {s=$2} /_count/ {c=$2} /_bucket/ {b[++n]=$0} END {printf "server-side: mean %.1f us over %d requests; ", s/c*1e6, c;
      for (i=1;i<=n;i++) { split(b[i], a, "le=\""); split(a[2], q, "\""); split(b[i], v, "} "); printf "<=%ss:%.4f ", q[1], v[2]/c } print "" }'
}
load() { "${PRIO[@]}" taskset -c 1 "$LOAD" "$@" --addr "127.0.0.1:$PORT" --ca "$WORK/ca.pem"; }

if want native; then
echo "== mode native, no cluster"
start --cluster never --mode native
echo "RSS idle: $(rss "$PID")"
load run --rate "$RATE" --seconds "$SECS"
echo "RSS after ${RATE}/s: $(rss "$PID")"
server_hist
load sweep --rates "$SWEEP" --seconds 10
stop
fi

if want auto; then
echo "== mode auto, $NODES nodes (fixed knowledge from a file)"
taskset -c 1 "$LOAD" nodes "$NODES" >"$WORK/nodes.json"
start --cluster never --mode auto --nodes "$WORK/nodes.json"
echo "RSS idle with $NODES nodes: $(rss "$PID")"
load run --rate "$AUTO_RATE" --seconds 10
echo "RSS after ${AUTO_RATE}/s: $(rss "$PID")"
server_hist
stop
fi

if want hostile; then
echo "== hostile load: 4 MB, dense, slow and idle clients at once; /healthz probed on new connections"
start --cluster never --mode native
load hostile --pid "$PID" --seconds "${HOSTILE_SECONDS:-15}"
stop
fi

if want path; then
echo "== request path in process (no TLS/HTTP), $NODES nodes"
taskset -c 0 "$PATHBENCH" "$NODES" 2000
fi

if [[ "${WATCH:-0}" == 1 ]]; then
  echo "== mode auto, $NODES nodes watched from the API server at ${KUBECONFIG:?}"
  taskset -c 1 "$LOAD" create-nodes "$NODES"
  start --cluster required --mode auto --events false
  for _ in $(seq 120); do
    curl -sk "https://127.0.0.1:$PORT/readyz" | grep -q ok && break
    sleep 0.5
  done
  curl -sk "https://127.0.0.1:$PORT/metrics" | grep -E '^tandem_webhook_nodes_cached'
  echo "RSS synced: $(rss "$PID")"
  load run --rate "$AUTO_RATE" --seconds 10
  echo "RSS after ${AUTO_RATE}/s: $(rss "$PID")"
  stop
fi
