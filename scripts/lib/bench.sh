# What the benchmark scripts (scripts/bench-http.sh, bench-upload.sh) share.
# Source it from the repository's root, then:
#   bench_init NAME                      name the script in messages
#   bench_install "CMD..." PACKAGE...    apt-get install PACKAGEs when a CMD is missing
#   bench_build_cport                    build `cport` (release); sets $CPORT
#   bench_workdir BASE                   make $WORK under BASE (mode 755); at exit
#                                        the processes in $PIDS stop, $WORK goes
#   wait_port PORT                       wait up to 10 s for a listener on
#                                        127.0.0.1:PORT; else show the logs, exit 1
#   median                               the median of the numbers on stdin (the
#                                        mean of the middle two for an even count)
# `set -euo pipefail` is the caller's.

bench_init() {
    BENCH_NAME=$1
    PATH="$PATH:/usr/sbin:/sbin"
}

bench_install() {
    local cmds=$1 missing=""
    shift
    for c in $cmds; do command -v "$c" >/dev/null || missing=1; done
    [ -z "$missing" ] && return 0
    echo "== installing $*"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

bench_build_cport() {
    echo "== building cport (release)"
    cargo build --release -q -p cport-cli --bin cport
    CPORT="${CARGO_TARGET_DIR:-target}/release/cport"
}

bench_workdir() {
    WORK=$(mktemp -d "$1/cport-$BENCH_NAME.XXXXXX")
    chmod 755 "$WORK"
    PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK" 2>/dev/null || true
}

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "$BENCH_NAME: nothing listens on port $1" >&2
    cat "$WORK"/cport-*.log "$WORK/nginx/error.log" >&2 || true
    exit 1
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
