#!/usr/bin/env bash
# cport's uploads beside nginx's DAV module (PUT), same file sizes, same
# pinning: both servers on core 0 (nginx with one worker, cport with one
# worker thread), the load (`cport bench http --upload SIZE`) on core 1.
# Rounds alternate which server goes first; the figures are medians, with
# the ratio cport/nginx. During each cport run of the largest size the
# server's RSS is sampled every 0.2 s: min and max are printed (flat means
# the body is streamed, not buffered).
#
# Differences kept on purpose: cport fsyncs each upload before its rename
# and hashes it (sha-256, answered in Repr-Digest); nginx writes a temp
# file and renames it, without fsync or digest.
#
# Usage: scripts/bench-upload.sh     (SIZES="1MiB 1GiB" ROUNDS=3 DURATION=10)
#        SIZES=1MiB CONNS=4 ROUNDS=5 BACKENDS=uring scripts/bench-upload.sh
#        NGINX_BODY_BUFFER=256k scripts/bench-upload.sh  (cport's write size)
#
# Uses ports 7760-7769 by default. Installs nginx-light with apt-get when
# nginx is missing (its DAV module is needed).
set -euo pipefail

SIZES=${SIZES:-1MiB 1GiB}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-1}
BACKENDS=${BACKENDS:-uring epoll}
NGINX_PORT=${NGINX_PORT:-7760}
CPORT_PORT=${CPORT_PORT:-7761} # the first backend's; the next ones count up
SERVER_CPU=${SERVER_CPU:-0}
NGINX_BODY_BUFFER=${NGINX_BODY_BUFFER:-16k}
CLIENT_CPU=${CLIENT_CPU:-1}

cd "$(dirname "$0")/.."
. scripts/lib/bench.sh
bench_init bench-upload
bench_install nginx nginx-light
nginx -V 2>&1 | grep -q http_dav_module || { echo "bench-upload: nginx lacks the DAV module" >&2; exit 1; }
bench_build_cport

bench_workdir "${BENCH_DIR:-/var/tmp}"
mkdir -p "$WORK/nginx/root/upload" "$WORK/nginx/root/tmp" "$WORK/www" "$WORK/cport"
# nginx's worker runs as an unprivileged user: it must write there.
chmod 1777 "$WORK/nginx/root/upload" "$WORK/nginx/root/tmp"
echo "bench-token-$$" >"$WORK/token"
echo ok >"$WORK/www/index.html"

cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    # The body reaches the temp file in writes of this size (nginx's
    # default, kept here, is 16k; 256k is cport's write size and was no
    # faster for nginx on this machine).
    client_body_buffer_size $NGINX_BODY_BUFFER;
    client_body_temp_path $WORK/nginx/root/tmp;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WORK/nginx/root;
        location /upload/ {
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
        }
    }
}
EOF

echo "== starting nginx (1 worker) and cport (1 thread; backends: $BACKENDS), all on core $SERVER_CPU"
taskset -c "$SERVER_CPU" nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)
NAMES=(nginx)
PORTS=("$NGINX_PORT")
RSS_PIDS=("")
port=$CPORT_PORT
for b in $BACKENDS; do
    mkdir -p "$WORK/cport/$b"
    RUST_LOG=warn taskset -c "$SERVER_CPU" "$CPORT" http --root "$WORK/www" --listen "127.0.0.1:$port" \
        --threads 1 --backend "$b" --upload-dir "$WORK/cport/$b" --upload-token-file "$WORK/token" \
        >"$WORK/cport-$b.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("cport-$b")
    PORTS+=("$port")
    RSS_PIDS+=($!)
    port=$((port + 1))
done
for p in "${PORTS[@]}"; do wait_port "$p"; done
RSS_PIDS[0]=$(pgrep -P "${PIDS[0]}" | head -1)

# Prints "MiB/s uploads errors" for one run.
run() { # port size duration
    taskset -c "$CLIENT_CPU" "$CPORT" bench http --target "http://127.0.0.1:$1/upload/" --upload "$2" \
        --conns "$CONNS" --token-file "$WORK/token" --duration "$3s" --warmup 1s --json |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.1f %d %d" % (r["bytes_per_sec"]/1048576, r["messages"], r["errors"]))'
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
biggest=${SIZES##* }

echo "== load: $(uptime)"
for size in $SIZES; do
    for n in "${NAMES[@]}"; do : >"$WORK/res-$n"; done
    count=${#NAMES[@]}
    for round in $(seq "$ROUNDS"); do
        order=()
        for i in $(seq 0 $((count - 1))); do order+=($(((i + round - 1) % count))); done
        for i in "${order[@]}"; do
            who=${NAMES[i]}
            rssfile="$WORK/rss-$who"
            : >"$rssfile"
            sampler=""
            if [ "$size" = "$biggest" ]; then
                (while sleep 0.2; do rss_kib "${RSS_PIDS[i]}" >>"$rssfile" 2>/dev/null || exit 0; done) &
                sampler=$!
            fi
            read -r mibs n errs < <(run "${PORTS[i]}" "$size" "$DURATION")
            if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; fi
            rss=""
            if [ -s "$rssfile" ]; then
                rss=$(sort -n "$rssfile" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "RSS %d-%d MiB", lo / 1024, hi / 1024 }')
            fi
            printf "   %-7s round %d %-12s %8.1f MiB/s  %5d uploads  %d errors  %s\n" "$size" "$round" "$who" "$mibs" "$n" "$errs" "$rss"
            echo "$mibs" >>"$WORK/res-$who"
        done
    done
    echo "== $size: medians of $ROUNDS rounds of ${DURATION}s, $CONNS connection(s)"
    nginx_med=$(median <"$WORK/res-nginx")
    for n in "${NAMES[@]}"; do
        m=$(median <"$WORK/res-$n")
        printf "   %-12s %8.1f MiB/s  %s\n" "$n" "$m" \
            "$(awk -v a="$m" -v b="$nginx_med" 'BEGIN { if (b > 0) printf "%.2fx nginx", a / b }')"
    done
done
echo "== load after: $(uptime)"
