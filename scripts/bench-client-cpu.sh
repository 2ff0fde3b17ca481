#!/usr/bin/env bash
# The load generator's own cost: CPU per message of `cport bench echo` and
# `cport bench chat` for two cport binaries (say, before and after a change
# to cport-bench), in alternating rounds against one server, so both see the
# same load. Prints, per load, each binary's median client CPU µs/message
# and the ratio B/A.
#
#   scripts/bench-client-cpu.sh BIN_A BIN_B [ROUNDS] [SECONDS]
#
# The server is BIN_B's (`cport echo` and `cport chat` on 127.0.0.1:7810
# and :7811). Say the machine's load (`uptime`) beside the figures.
set -euo pipefail
a=${1:?BIN_A}; b=${2:?BIN_B}; rounds=${3:-3}; secs=${4:-5}
echo_port=7810; chat_port=7811
"$b" echo --listen 127.0.0.1:$echo_port >/dev/null 2>&1 &
echo_pid=$!
"$b" chat --listen 127.0.0.1:$chat_port >/dev/null 2>&1 &
chat_pid=$!
trap 'kill $echo_pid $chat_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/$echo_port) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$chat_port) 2>/dev/null && break
    sleep 0.1
done
uptime
out=$(mktemp -d)
for r in $(seq "$rounds"); do
    for side in A B; do
        bin=$a; [[ $side == B ]] && bin=$b
        "$bin" bench echo --target 127.0.0.1:$echo_port --conns 50 --size 64 --duration "${secs}s" --warmup 1s --json >"$out/echo-$side-$r.json"
        "$bin" bench chat --target 127.0.0.1:$chat_port --conns 200 --rooms 10 --rate 20 --duration "${secs}s" --warmup 2s --json >"$out/chat-$side-$r.json"
    done
done
uptime
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
for kind in ("echo", "chat"):
    med = {}
    for side in ("A", "B"):
        per = []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{out}/{kind}-{side}-{r}.json"))
            # client_cpu is the share of one core over the measured window.
            per.append(j["client_cpu"] * j["seconds"] / max(j["messages"], 1) * 1e6)
        med[side] = statistics.median(per)
        print(f"{kind} {side}: client CPU {med[side]:.3f} µs/msg (rounds: {', '.join(f'{x:.3f}' for x in per)})")
    print(f"{kind}: B/A = {med['B'] / med['A']:.3f}")
PY
rm -rf "$out"
