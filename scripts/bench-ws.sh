#!/usr/bin/env bash
# WebSocket echo: `cport echo --ws` beside tokio + tokio-tungstenite
# (peers/tokio-ws-echo), same load (`cport bench ws`), each server pinned to
# one core (SERVER_CPU, one worker thread each), the load on CLIENT_CPU.
# For each connection count: msg/s, server CPU per message (from
# /proc/PID/stat over the run) and p99, medians of ROUNDS alternating
# rounds, and the ratios cport/tokio. Targets (issue 15): msg/s >= 1.2x,
# CPU per message <= 0.8x, at 50 and 500 connections.
#
# Usage: scripts/bench-ws.sh      (ROUNDS=3 DURATION=10 CONNS="50 500" SIZE=64)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50 500}
SIZE=${SIZE:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."
echo "== building (release)"
cargo build --release -q -p cport-cli --bin cport
cargo build --release -q -p tokio-ws-echo
T=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d /tmp/cport-bench-ws.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

# Starts a server on a free port; sets ADDR and PID.
start() { # name cmd...
    local name=$1
    shift
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.out" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        ADDR=$(grep -o '127\.0\.0\.1:[0-9]*' "$WORK/$name.out" | head -1 || true)
        [ -n "$ADDR" ] && return 0
        sleep 0.1
    done
    echo "bench-ws: $name did not start" >&2
    cat "$WORK/$name.out" >&2
    exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start cport env RUST_LOG=warn "$T/cport" echo --ws --listen 127.0.0.1:0 --threads 1
CPORT_ADDR=$ADDR CPORT_PID=$PID
start tokio "$T/tokio-ws-echo" 127.0.0.1:0 1
TOKIO_ADDR=$ADDR TOKIO_PID=$PID
HZ=$(getconf CLK_TCK)

run() { # name addr pid conns -> "msgs/s cpu_us_per_msg p99_us"
    local before after json
    before=$(cpu_ticks "$3")
    json=$(taskset -c "$CLIENT_CPU" "$T/cport" bench ws --target "ws://$2/" --conns "$4" --size "$SIZE" \
        --duration "${DURATION}s" --warmup 0s --json)
    after=$(cpu_ticks "$3")
    python3 -c '
import json, sys
r = json.loads(sys.argv[1]); ticks = int(sys.argv[3]) - int(sys.argv[2]); hz = int(sys.argv[4])
cpu_us = ticks / hz * 1e6
print("%.0f %.2f %d" % (r["rate"], cpu_us / max(r["messages"], 1), r["p99_us"]))
' "$json" "$before" "$after" "$HZ"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-6s %-6s %12s %14s %10s\n" conns server "msg/s" "cpu µs/msg" "p99 µs"
for c in $CONNS; do
    : >"$WORK/cport.$c" ; : >"$WORK/tokio.$c"
    for r in $(seq "$ROUNDS"); do
        if [ $((r % 2)) -eq 1 ]; then order="cport tokio"; else order="tokio cport"; fi
        for s in $order; do
            if [ "$s" = cport ]; then run cport "$CPORT_ADDR" "$CPORT_PID" "$c" >>"$WORK/cport.$c"
            else run tokio "$TOKIO_ADDR" "$TOKIO_PID" "$c" >>"$WORK/tokio.$c"; fi
        done
    done
    for s in cport tokio; do
        rate=$(awk '{print $1}' "$WORK/$s.$c" | median)
        cpu=$(awk '{print $2}' "$WORK/$s.$c" | median)
        p99=$(awk '{print $3}' "$WORK/$s.$c" | median)
        printf "%-6s %-6s %12s %14s %10s\n" "$c" "$s" "$rate" "$cpu" "$p99"
        eval "${s}_rate=$rate ${s}_cpu=$cpu"
    done
    python3 -c "import sys; a=[float(x) for x in sys.argv[1:]]; print(f'       ratio  msg/s {a[0]/a[1]:.2f}x (target >= 1.2)  cpu/msg {a[2]/a[3]:.2f}x (target <= 0.8)')" \
        "$cport_rate" "$tokio_rate" "$cport_cpu" "$tokio_cpu"
done
