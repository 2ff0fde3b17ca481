#!/usr/bin/env bash
# cport's HTTP server beside nginx, on the same web root, under wrk.
#
# Both servers get one core's worth of CPU (pinned to core 0: nginx with one
# worker, cport with one worker thread); wrk runs on core 1. Rounds
# alternate which server goes first; the figures printed are medians of the
# rounds, with the ratio cport/nginx:
#   - a 1 KiB file over keep-alive: requests/s and latency (wrk -t1 -c50);
#   - a 100 MiB file: transfer rate (wrk -t1 -c1, whole-file GETs).
#
# cport runs once per backend in BACKENDS (default: "uring epoll"), each
# its own server process, so both backends are measured against the same
# nginx in the same run.
#
# Usage: scripts/bench-http.sh            (ROUNDS=3 DURATION=10 by default)
#        ROUNDS=5 DURATION=5 CONNS=50 BIG_CONNS=1 BACKENDS=uring scripts/bench-http.sh
#
# Installs nginx-light and wrk with apt-get when they are missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
BIG_CONNS=${BIG_CONNS:-1}
BIG_MIB=${BIG_MIB:-100}
BACKENDS=${BACKENDS:-uring epoll}
NGINX_PORT=${NGINX_PORT:-18181}
CPORT_PORT=${CPORT_PORT:-18182} # the first backend's; the next ones count up
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
bench_init bench-http

# ----- tools --------------------------------------------------------------
bench_install "nginx wrk" nginx-light wrk
for tool in nginx wrk taskset cargo; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool not found" >&2; exit 1; }
done
bench_build_cport

# ----- the web root and nginx's config ----------------------------------------
bench_workdir /tmp

mkdir -p "$WORK/root" "$WORK/nginx"
head -c 1024 /dev/urandom >"$WORK/root/1k.bin"
head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/root/big.bin"
chmod -R a+rX "$WORK/root"

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
        root $WORK/root;
    }
}
EOF

echo "== starting nginx (1 worker) and cport (1 thread; backends: $BACKENDS), all on core $SERVER_CPU"
taskset -c "$SERVER_CPU" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
NAMES=(nginx)
PORTS=("$NGINX_PORT")
CPU_PIDS=("") # nginx's worker, found once it runs
port=$CPORT_PORT
for b in $BACKENDS; do
    RUST_LOG=warn taskset -c "$SERVER_CPU" "$CPORT" http --root "$WORK/root" --listen "127.0.0.1:$port" \
        --threads 1 --backend "$b" >"$WORK/cport-$b.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("cport-$b")
    PORTS+=("$port")
    CPU_PIDS+=($!)
    port=$((port + 1))
done

for p in "${PORTS[@]}"; do wait_port "$p"; done
CPU_PIDS[0]=$(pgrep -P "${PIDS[0]}" | head -1)

# CPU time (user + system, all threads) of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# ----- wrk and its output -------------------------------------------------------
# Prints "req_per_s latency_avg_us latency_p99_us transfer_mib_per_s
# requests server_cpu_seconds".
run_wrk() { # port path conns duration server_pid
    local out c0 c1
    c0=$(cpu_ticks "$5")
    out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$3" -d"$4"s --latency "http://127.0.0.1:$1$2")
    c1=$(cpu_ticks "$5")
    echo "$out" | awk -v cpu="$(((c1 - c0)))" -v hz="$HZ" '
        function us(v) {
            if (v ~ /us$/) return v + 0;
            if (v ~ /ms$/) return v * 1000;
            if (v ~ /m$/)  return v * 60e6;
            if (v ~ /s$/)  return v * 1e6;
            return v + 0;
        }
        function mib(v) {
            if (v ~ /GB$/) return v * 1024;
            if (v ~ /MB$/) return v + 0;
            if (v ~ /KB$/) return v / 1024;
            return v / 1048576;
        }
        /^ +Latency +[0-9]/   { avg = us($2) }
        /^ +99%/              { p99 = us($2) }
        /^Requests\/sec:/     { rps = $2 }
        / requests in /       { n = $1 }
        /^Transfer\/sec:/     { tr = mib($2) }
        /Socket errors|Non-2xx/ { print "bench-http: wrk: " $0 > "/dev/stderr" }
        END { printf "%.1f %.1f %.1f %.1f %d %.2f\n", rps, avg, p99, tr, n, cpu / hz }'
}

echo "== warming up"
for i in "${!PORTS[@]}"; do
    run_wrk "${PORTS[i]}" /1k.bin "$CONNS" 1 "${CPU_PIDS[i]}" >/dev/null
    run_wrk "${PORTS[i]}" /big.bin 1 1 "${CPU_PIDS[i]}" >/dev/null
done

# Results per server: one line per round,
# "rps avg_us p99_us mib_per_s cpu_us_per_request cpu_percent_big".
for n in "${NAMES[@]}"; do : >"$WORK/res-$n"; done
count=${#NAMES[@]}
for round in $(seq "$ROUNDS"); do
    # Rotate who goes first, and alternate the direction, round by round.
    order=()
    for i in $(seq 0 $((count - 1))); do order+=($(((i + round - 1) % count))); done
    if [ $((round % 2)) -eq 0 ]; then
        rev=()
        for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[i]}"); done
        order=("${rev[@]}")
    fi
    for i in "${order[@]}"; do
        who=${NAMES[i]}
        read -r rps avg p99 _ n cpu < <(run_wrk "${PORTS[i]}" /1k.bin "$CONNS" "$DURATION" "${CPU_PIDS[i]}")
        read -r _ _ _ tr _ bcpu < <(run_wrk "${PORTS[i]}" /big.bin "$BIG_CONNS" "$DURATION" "${CPU_PIDS[i]}")
        per=$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.2f", (n > 0 ? c * 1e6 / n : 0) }')
        pct=$(awk -v c="$bcpu" -v d="$DURATION" 'BEGIN { printf "%.0f", c * 100 / d }')
        printf "   round %d %-12s 1 KiB: %7.0f req/s avg %5.0f us p99 %5.0f us %5.2f us cpu/req | %d MiB: %5.0f MiB/s cpu %3d%%\n" \
            "$round" "$who" "$rps" "$avg" "$p99" "$per" "$BIG_MIB" "$tr" "$pct"
        echo "$rps $avg $p99 $tr $per $pct" >>"$WORK/res-$who"
    done
done

# The median of column $2 of server $1's results.
med() { awk -v c="$2" '{ print $c }' "$WORK/res-$1" | median; }

echo
echo "== medians of $ROUNDS rounds of ${DURATION}s (servers on core $SERVER_CPU, wrk on core $CLIENT_CPU)"
printf "%-13s %11s %9s %9s %11s | %11s %9s\n" "" "1KiB req/s" "avg us" "p99 us" "cpu us/req" "${BIG_MIB}MiB MiB/s" "cpu %"
for n in "${NAMES[@]}"; do
    printf "%-13s %11.0f %9.0f %9.0f %11.2f | %11.0f %9.0f\n" \
        "$n" "$(med "$n" 1)" "$(med "$n" 2)" "$(med "$n" 3)" "$(med "$n" 5)" "$(med "$n" 4)" "$(med "$n" 6)"
done
for n in "${NAMES[@]:1}"; do
    ratios=()
    for c in 1 2 3 5 4 6; do
        ratios+=("$(awk -v a="$(med "$n" "$c")" -v b="$(med nginx "$c")" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')")
    done
    printf "%-13s %11s %9s %9s %11s | %11s %9s   (%s / nginx)\n" "ratio" "${ratios[@]}" "$n"
done
echo "(req/s and MiB/s: higher is better; latency and server CPU: lower is better)"
