#!/usr/bin/env bash
# What relaying costs: two release nodes over one Redis, long-polling (and negotiated WebSocket)
# receivers fed by the control API, measured by the k6 fan-out scenarios once with every request on the
# node that negotiated (local) and once with every request after negotiate on the other node (RELAY=1,
# relayed back). Prints p50/p99 latency, deliveries and the nodes' CPU per delivery for each.
#
#   RECEIVERS (1000)  RATE (100 msg/s)  DURATION (30s)  TRANSPORTS (longpolling websockets)
#   HUBCAST_BIN (target/release/hubcast, built with --features conformance)  K6 (k6 on PATH, else
#   tests/python/.venv/bin/k6)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${HUBCAST_BIN:-target/release/hubcast}
K6=${K6:-$(command -v k6 || echo tests/python/.venv/bin/k6)}
RECEIVERS=${RECEIVERS:-1000}
RATE=${RATE:-100}
DURATION=${DURATION:-30s}
TRANSPORTS=${TRANSPORTS:-longpolling websockets}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
PIDS+=($!)
NODES=()
NODE_PIDS=()
for i in 0 1; do
  port=$(free_port); admin=$(free_port)
  HUBCAST_BACKPLANE="redis://127.0.0.1:$REDIS_PORT" HUBCAST_HISTORY=none HUBCAST_LOG=warn \
    "$BIN" serve --conformance --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
    --control-anonymous 2>"$WORK/node$i.log" &
  PIDS+=($!); NODE_PIDS+=($!)
  NODES+=("http://127.0.0.1:$port")
done
for url in "${NODES[@]}"; do
  for _ in $(seq 100); do curl -fs "$url/" -o /dev/null && break; sleep 0.1; done
done
TICK=$(getconf CLK_TCK)

printf '%-12s %-8s %10s %10s %12s %14s\n' transport mode p50_ms p99_ms deliveries cpu_us/delivery
for transport in $TRANSPORTS; do
  script=loadtest/k6/fanout-latency.js
  [ "$transport" = longpolling ] && script=loadtest/k6/long-polling.js
  for relay in 0 1; do
    before=0; for pid in "${NODE_PIDS[@]}"; do before=$((before + $(cpu_ticks "$pid"))); done
    "$K6" run --quiet --no-color -e HUBCAST_URL="$(IFS=,; echo "${NODES[*]}")" \
      -e RECEIVER_TRANSPORT="$transport" -e RECEIVERS="$RECEIVERS" -e CONNS_PER_VU=50 \
      -e RATE="$RATE" -e DURATION="$DURATION" -e WARMUP=10s -e PUBLISH=api -e GROUP='*' \
      -e RELAY="$relay" -e LATENCY_P95_MS=100000 -e LATENCY_P99_MS=100000 \
      -e SUMMARY_JSON="$WORK/summary.json" "$script" >"$WORK/k6.log" 2>&1 || true
    after=0; for pid in "${NODE_PIDS[@]}"; do after=$((after + $(cpu_ticks "$pid"))); done
    python3 - "$WORK/summary.json" "$transport" "$relay" "$((after - before))" "$TICK" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
m = data["metrics"]
lat = m["fanout_latency"]["values"]
got = m["fanout_received"]["values"]["count"]
cpu_us = int(sys.argv[4]) / int(sys.argv[5]) * 1e6
mode = "relayed" if sys.argv[3] == "1" else "local"
print(f"{sys.argv[2]:<12} {mode:<8} {lat['med']:10.2f} {lat['p(99)']:10.2f} {got:12.0f} {cpu_us / max(got, 1):14.2f}")
PY
  done
done
