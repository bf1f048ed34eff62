#!/usr/bin/env bash
# What Redis pays per PUBLISH as nodes are added: NODES release nodes over one redis-server, receivers
# spread over them, one publisher broadcasting RATE msg/s for 10 s (hubcast-loadgen fanout); prints the
# publishes, deliveries, p99, Redis's CPU per PUBLISH and the nodes' CPU per delivery.
#   usage: loadtest/scale/redis-cost.sh NODES RATE RECEIVERS   (e.g. 3 2000 30)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:?nodes}; RATE=${2:?rate}; RECV=${3:?receivers}
ulimit -n 20000
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" "${RPID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
RPID=$!
sleep 0.5
ADDRS=()
for i in $(seq 1 $N); do
  HUBCAST_BACKPLANE=redis://127.0.0.1:16379 HUBCAST_HISTORY=none HUBCAST_LOG=error target/release/hubcast serve --conformance --listen 127.0.0.1:1808$i --admin-listen 127.0.0.1:1909$i >/dev/null 2>&1 &
  PIDS+=($!); ADDRS+=(127.0.0.1:1808$i)
done
for i in $(seq 1 $N); do for k in $(seq 50); do curl -fs http://127.0.0.1:1909$i/live >/dev/null && break; sleep 0.1; done; done
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
ALSO=(); for a in "${ADDRS[@]:1}"; do ALSO+=(--also $a); done
r0=$(ticks $RPID); n0=0; for p in "${PIDS[@]}"; do n0=$((n0 + $(ticks $p))); done
P0=$(redis-cli -p 16379 INFO commandstats | grep -o 'cmdstat_publish:calls=[0-9]*' | cut -d= -f2 || true); P0=${P0:-0}
./target/release/hubcast-loadgen fanout --server ${ADDRS[0]} "${ALSO[@]}" --server-pid ${PIDS[0]} --receivers $RECV --rate $RATE --steps 1 --step-secs 10 --json "$WORK/scale.json" >/dev/null 2>&1
r1=$(ticks $RPID); n1=0; for p in "${PIDS[@]}"; do n1=$((n1 + $(ticks $p))); done
P1=$(redis-cli -p 16379 INFO commandstats | grep -o 'cmdstat_publish:calls=[0-9]*' | cut -d= -f2 || true)
python3 - $N $RATE $RECV $((r1-r0)) $((n1-n0)) $((P1-P0)) "$WORK/scale.json" <<'PY'
import json,sys
n,rate,recv,rt,nt,pubs=map(int,sys.argv[1:7])
tick_ms=1000/100  # USER_HZ
d=json.load(open(sys.argv[7]))
step=d['steps'][-1]
deliv=step['delivered']
print(f"nodes={n} rate={rate} receivers={recv} publishes={pubs} deliveries={deliv} p99={step['p99_ms']:.1f}ms redis_cpu={rt*tick_ms:.0f}ms redis_us_per_publish={rt*tick_ms*1000/max(pubs,1):.1f} nodes_cpu_us_per_delivery={nt*tick_ms*1000/max(deliv,1):.2f}")
PY

