#!/usr/bin/env bash
# The cost of the chat cluster's backbone (docs/CLUSTER.md): the same chat
# load (`cport bench chat`: CONNS clients in ROOMS rooms, each posting RATE
# messages/s) against one `cport chat` alone and against three
# `cport chat --cluster` nodes on one Redis (clients spread over the three,
# so every room has members on every node). Servers and Redis share
# SERVER_CPU, the load runs on CLIENT_CPU. Rounds alternate; the table gives
# medians of ROUNDS of fan-out deliveries/s and delivery latency p50/p99,
# and the ratios cluster/single.
#
# Usage: scripts/bench-cluster.sh   (ROUNDS=3 DURATION=10 CONNS=300 ROOMS=10 RATE=2 PORT_BASE=7640)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-300}
ROOMS=${ROOMS:-10}
RATE=${RATE:-2}
PORT_BASE=${PORT_BASE:-7640}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "bench-cluster: redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
echo "== building (release)"
cargo build --release -q -p cport-cli --bin cport
T=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d /tmp/cport-bench-cluster.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

REDIS_PORT=$PORT_BASE
taskset -c "$SERVER_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.out" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# Starts a chat node; sets ADDR.
start() { # name args...
    local name=$1
    shift
    taskset -c "$SERVER_CPU" env RUST_LOG=warn "$T/cport" chat --listen 127.0.0.1:0 --no-history "$@" \
        >"$WORK/$name.out" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 100); do
        ADDR=$(grep -o 'chat: listening on 127\.0\.0\.1:[0-9]*' "$WORK/$name.out" | grep -o '127.*' || true)
        WEB=$(grep -o 'chat-web: listening on 127\.0\.0\.1:[0-9]*' "$WORK/$name.out" | grep -o '127.*' || true)
        if [ -n "$ADDR" ] && { [ -n "$WEB" ] || [[ " $* " != *" --web "* ]]; }; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-cluster: $name did not start" >&2
    cat "$WORK/$name.out" >&2
    exit 1
}

start single
SINGLE=$ADDR
NODES=()
WEBS=()
for n in a b c; do
    start "node-$n" --cluster "redis://127.0.0.1:$REDIS_PORT" --node-id "$n" --web 127.0.0.1:0
    NODES+=("$ADDR")
    WEBS+=("$WEB")
done
CLUSTER=$(IFS=,; echo "${NODES[*]}")

run() { # targets -> "deliveries/s p50_us p99_us"
    taskset -c "$CLIENT_CPU" "$T/cport" bench chat --targets "$1" --conns "$CONNS" --rooms "$ROOMS" \
        --rate "$RATE" --duration "${DURATION}s" --warmup 3s --json |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["rate"], r["p50_us"], r["p99_us"])'
}

: >"$WORK/single" >"$WORK/cluster"
for r in $(seq "$ROUNDS"); do
    echo "== round $r/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    run "$SINGLE" | tee -a "$WORK/single"
    run "$CLUSTER" | tee -a "$WORK/cluster"
done

python3 - "$WORK/single" "$WORK/cluster" "$CONNS" "$ROOMS" "$RATE" <<'EOF'
import statistics, sys
def cols(path):
    rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
    return [statistics.median(c) for c in zip(*rows)]
s, c = cols(sys.argv[1]), cols(sys.argv[2])
print(f"\nchat fan-out, {sys.argv[3]} clients in {sys.argv[4]} rooms, {sys.argv[5]} msg/s each (medians)")
print(f"{'':>22} {'deliveries/s':>13} {'p50 µs':>9} {'p99 µs':>9}")
print(f"{'one node':>22} {s[0]:>13.0f} {s[1]:>9.0f} {s[2]:>9.0f}")
print(f"{'three nodes + Redis':>22} {c[0]:>13.0f} {c[1]:>9.0f} {c[2]:>9.0f}")
print(f"{'cluster / single':>22} {c[0]/s[0]:>13.2f} {c[1]/max(s[1],1):>9.2f} {c[2]/max(s[2],1):>9.2f}")
EOF
# What the backbone dropped or repeated, per node (/_cport/stats).
for w in "${WEBS[@]}"; do
    curl -s "http://$w/_cport/stats" | python3 -c 'import json,sys; c=json.load(sys.stdin)["chat"]["cluster"]; print(c["node"], {k: c[k] for k in ("published", "publish_dropped", "commands_overflowed", "duplicates_dropped", "reconnects")})'
done
