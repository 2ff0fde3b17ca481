#!/usr/bin/env bash
# Soak: a million connections churned against one running cport server,
# its fds, RSS and threads sampled every second and charted to SVG.
#
# Each connection opens, echoes a few bytes (or, for http, GETs one small
# file), and closes; CLIENTS processes churn in parallel. The server is
# `cport echo` (SERVER=echo, the default), `cport http` (SERVER=http) or
# `cport serve` (SERVER=serve: echo churned, chat and web idle beside it).
# A server that leaks shows it as a line that climbs; a healthy one as flat
# lines after the first seconds (the receive pool paging in).
#
# It bounds itself: it stops after COUNT connections or MAX_SECS seconds,
# whichever comes first, then stops the server with SIGTERM and writes
#   $OUT/soak.csv  (t_s, connections, fds, threads, rss_kib, cpu_s)
#   $OUT/soak.svg  (the chart)
# and prints the first and last samples. Not run in CI: it is for machines
# with time. Everything binds port 0 on 127.0.0.1.
#
# Usage: scripts/soak.sh
#        COUNT=20000 MAX_SECS=60 BACKEND=epoll SERVER=http scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1000000}
MAX_SECS=${MAX_SECS:-3600}
CLIENTS=${CLIENTS:-2}
BACKEND=${BACKEND:-auto}
SERVER=${SERVER:-echo}
OUT=${OUT:-target/soak}
CPORT=${CPORT:-target/release/cport}

mkdir -p "$OUT"
if [[ ! -x $CPORT || ${BUILD:-1} == 1 ]]; then
    cargo build --release -q -p cport-cli
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

root=$(mktemp -d)
printf 'soak\n' > "$root/small.txt"
case $SERVER in
    echo) args=(echo --listen 127.0.0.1:0) ; want=echo ;;
    http) args=(http --listen 127.0.0.1:0 --root "$root") ; want=http ;;
    serve) args=(serve --echo 127.0.0.1:0 --chat 127.0.0.1:0 --http 127.0.0.1:0 --root "$root") ; want=echo ;;
    *) echo "SERVER must be echo, http or serve" >&2; exit 2 ;;
esac

RUST_LOG=warn "$CPORT" "${args[@]}" --backend "$BACKEND" > "$OUT/server.out" 2> "$OUT/server.err" &
server=$!
sampler=
cleanup() {
    [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$root"
}
trap cleanup EXIT

addr=
for _ in $(seq 100); do
    addr=$(sed -n "s/^cport $want: listening on \([^ ]*\).*/\1/p" "$OUT/server.out" | head -1)
    [[ -n $addr ]] && break
    sleep 0.1
done
[[ -n $addr ]] || { echo "the server did not start:" >&2; cat "$OUT/server.err" >&2; exit 1; }
echo "soak: $(grep "cport $want: listening" "$OUT/server.out")"
echo "soak: $COUNT connections, at most ${MAX_SECS}s, $CLIENTS client processes -> $OUT/soak.svg"

# The connection count, shared with the sampler through a file.
progress="$OUT/progress"
echo 0 > "$progress"

# One sample a second: /proc/PID/{fd,task,status,stat}.
sample() {
    local t0=$SECONDS hz=100 stat rest
    echo "t_s,connections,fds,threads,rss_kib,cpu_s"
    while kill -0 "$server" 2>/dev/null; do
        local fds threads rss
        fds=$(ls "/proc/$server/fd" 2>/dev/null | wc -l)
        threads=$(ls "/proc/$server/task" 2>/dev/null | wc -l)
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
        stat=$(cat "/proc/$server/stat" 2>/dev/null) || break
        rest=${stat##*) }
        read -r -a f <<< "$rest"
        local ticks=$((f[11] + f[12]))
        printf '%d,%s,%d,%d,%d,%d.%02d\n' "$((SECONDS - t0))" "$(cat "$progress")" "$fds" "$threads" "${rss:-0}" \
            "$((ticks / hz))" "$((ticks % hz))"
        sleep 1
    done
}
sample > "$OUT/soak.csv" &
sampler=$!

python3 - "$addr" "$COUNT" "$MAX_SECS" "$CLIENTS" "$SERVER" "$progress" <<'PY'
import multiprocessing as mp, socket, sys, time

addr, count, max_secs, clients, server, progress = sys.argv[1:]
host, port = addr.rsplit(":", 1)
count, max_secs, clients = int(count), float(max_secs), int(clients)
deadline = time.monotonic() + max_secs

def churn(share, done, errors):
    req = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    n = 0
    while n < share and time.monotonic() < deadline:
        try:
            with socket.create_connection((host, int(port)), timeout=10) as s:
                if server == "http":
                    s.sendall(req)
                    while s.recv(65536):
                        pass
                else:
                    s.sendall(b"soak-0123456789")
                    got = b""
                    while len(got) < 15:
                        chunk = s.recv(64)
                        if not chunk:
                            raise OSError("closed early")
                        got += chunk
        except OSError:
            with errors.get_lock():
                errors.value += 1
        n += 1
        if n % 1000 == 0:
            with done.get_lock():
                done.value += 1000
    with done.get_lock():
        done.value += n % 1000

done, errors = mp.Value("q", 0), mp.Value("q", 0)
procs = [mp.Process(target=churn, args=(count // clients + (i < count % clients), done, errors)) for i in range(clients)]
for p in procs:
    p.start()
t0 = time.monotonic()
while any(p.is_alive() for p in procs):
    time.sleep(1)
    with open(progress, "w") as f:
        f.write(str(done.value))
    rate = done.value / max(time.monotonic() - t0, 1e-9)
    print(f"\rsoak: {done.value} connections, {rate:,.0f}/s, {errors.value} errors", end="", flush=True)
for p in procs:
    p.join()
with open(progress, "w") as f:
    f.write(str(done.value))
print()
if errors.value:
    print(f"soak: {errors.value} connections failed", file=sys.stderr)
PY
sleep 2 # two more samples after the churn: the server at rest

kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
kill -TERM "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true

python3 - "$OUT/soak.csv" "$OUT/soak.svg" "$SERVER" "$BACKEND" <<'PY'
import csv, sys

src, dst, server, backend = sys.argv[1:]
rows = [r for r in csv.DictReader(open(src)) if r["t_s"]]
if not rows:
    sys.exit("soak: no samples")
t = [float(r["t_s"]) for r in rows]
series = [
    ("open fds", [float(r["fds"]) for r in rows], "#1f77b4"),
    ("threads", [float(r["threads"]) for r in rows], "#2ca02c"),
    ("RSS (MiB)", [float(r["rss_kib"]) / 1024 for r in rows], "#d62728"),
    ("connections (thousands)", [float(r["connections"]) / 1000 for r in rows], "#7f7f7f"),
]
W, H, PAD, GAP = 760, 150, 60, 30
height = len(series) * (H + GAP) + 50
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">',
       f'<rect width="100%" height="100%" fill="white"/>',
       f'<text x="{PAD}" y="20" font-size="14">cport {server} soak ({backend}): {int(float(rows[-1]["connections"])):,} connections in {t[-1]:.0f} s</text>']
tmax = max(t[-1], 1)
for i, (name, ys, colour) in enumerate(series):
    top = 40 + i * (H + GAP)
    ymax = max(max(ys) * 1.1, 1)
    def x(v): return PAD + (W - PAD - 20) * v / tmax
    def y(v): return top + H - H * v / ymax
    out.append(f'<rect x="{PAD}" y="{top}" width="{W - PAD - 20}" height="{H}" fill="none" stroke="#ccc"/>')
    out.append(f'<text x="{PAD}" y="{top - 5}">{name}: first {ys[0]:.1f}, last {ys[-1]:.1f}, max {max(ys):.1f}</text>')
    out.append(f'<text x="{PAD - 5}" y="{top + 10}" text-anchor="end">{ymax:.0f}</text>')
    out.append(f'<text x="{PAD - 5}" y="{top + H}" text-anchor="end">0</text>')
    pts = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(t, ys))
    out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
out.append(f'<text x="{W - 20}" y="{height - 8}" text-anchor="end">seconds ({tmax:.0f})</text>')
out.append("</svg>")
open(dst, "w").write("\n".join(out))
first, last = rows[0], rows[-1]
print(f"soak: first sample {dict(first)}")
print(f"soak: last sample  {dict(last)}")
print(f"soak: chart in {dst}")
PY
