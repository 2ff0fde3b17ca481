#!/usr/bin/env bash
# Mutation testing with cargo-mutants: plant one small bug at a time in the
# code below and check that some test fails. A mutant that survives is a bug
# no test would notice (or an equivalent change, explained in
# docs/TESTING.md).
#
# Usage: scripts/mutants.sh [SCOPE...]      (default: every scope, hours)
#        scripts/mutants.sh --list [SCOPE...]   (what would be mutated)
#        scripts/mutants.sh ci                 (the slice .ci/run runs)
#
# Scopes (each: the files mutated, and the tests run against each mutant):
#   path    HTTP path decoding and resolve_under_root   cport-proto unit tests
#   range   HTTP Range parsing                          cport-proto unit tests
#   hub     chat hub routing                            cport-proto unit tests
#   proto   the whole of cport-proto                    cport-proto unit tests
#   proto-framing  length-prefixed and line framing     cport-proto unit tests of framing::
#   proto-chat     chat command parsing                 ... of chat::
#   proto-http-request   HTTP request heads, errors     ... of http::
#   proto-http-response  responses, conditionals, digests  ... of http::
#   proto-http-stream    request streams, chunked bodies   ... of http::
#   proto-ws       the WebSocket codec and handshake    ... of ws::
#   proto-game     the game protocol's codec            ... of game::
#   (the per-module proto scopes run only that module's unit tests; retry
#   survivors against all of them with MUTANTS_PROTO_ALL=1 and
#   MUTANTS_ARGS=--iterate before counting one missed)
#   sched   the scheduler's dispatch and promotion      cport unit tests, threads, workers
#   sched-all  the whole scheduler (sched.rs)           the same
#   handle  the port's handle table                     cport unit tests, ops, errors, fd_leaks
#   port    the port                                    every cport test
#   queue   the server core's send queue                cport-server unit tests
#   queue-full  the same                                cport-server unit tests, sessions, echo
#   broadcast  Session::broadcast and its wrappers      cport-server sessions test
#   files   the HTTP server's file resolution           cport-http unit tests, http, refusals
#   files-all  the whole of files.rs (replies too)      the same
#   ci      a bounded slice (CI_MAX, default 5 mutants) of the path, range
#           and hub mutants, those in lines the last commit changed first;
#           fails on any survivor
#
# Environment: PROPTEST_CASES (default 32 here, except for ci);
# CARGO_TARGET_DIR (default target/mutants-build); MUTANTS_OUT (default target/mutants) holds one mutants.out per
# scope; MUTANTS_ARGS adds cargo-mutants options (`--iterate`); MUTANTS_JOBS (default 1: the machine is shared); MUTANTS_IN_PLACE=1
# mutates this tree instead of a copy (faster: reuses target/; CI only, do
# not edit the tree meanwhile).
set -euo pipefail
cd "$(dirname "$0")/.."

out_root="${MUTANTS_OUT:-target/mutants}"
# A mutant that fails a property test must not leave a regression file in
# the tree (in place, it would).
export PROPTEST_DISABLE_FAILURE_PERSISTENCE=true
jobs="${MUTANTS_JOBS:-1}"
list=()
if [[ "${1:-}" == "--list" ]]; then
    list=(--list)
    shift
fi

common=(--no-shuffle)
# MUTANTS_ARGS: more cargo-mutants options, e.g. `--iterate` to retest only
# what the last run of a scope did not catch.
read -r -a extra <<<"${MUTANTS_ARGS:-}"
common+=("${extra[@]}")
if [[ "${MUTANTS_IN_PLACE:-0}" == 1 ]]; then
    common+=(--in-place)
else
    common+=(--jobs "$jobs")
    # Each run builds in a fresh copy of the tree; one target directory for
    # all of them builds the dependencies (with cap_lints' flags) once. Run
    # scopes one after another: two runs at once on one target directory
    # rebuild each other's copy of the crate (cargo sees the same package)
    # and wait on its lock; give a parallel run its own CARGO_TARGET_DIR.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/mutants-build}"
fi

# run SCOPE [cargo-mutants args...] -- [cargo test args...]
run() {
    local scope="$1"
    shift
    echo "=== mutants: $scope" >&2
    if ((${#list[@]})); then
        # Only the arguments before `--` select mutants.
        local sel=()
        while (($#)) && [[ "$1" != "--" ]]; do
            sel+=("$1")
            shift
        done
        cargo mutants "${list[@]}" "${sel[@]}"
        return
    fi
    mkdir -p "$out_root/$scope"
    cargo mutants "${common[@]}" --output "$out_root/$scope" "$@"
}

proto_tests=(-- --lib)
# The test arguments of a per-module proto scope: that module's unit tests,
# or all of the crate's with MUTANTS_PROTO_ALL=1 (to retry survivors).
proto_only() {
    if [[ "${MUTANTS_PROTO_ALL:-0}" == 1 ]]; then
        echo "-- --lib"
    else
        echo "-- --lib -- $1::"
    fi
}

scope() {
    case "$1" in
    path) run path -p cport-proto -f crates/cport-proto/src/http/path.rs "${proto_tests[@]}" ;;
    range) run range -p cport-proto -f crates/cport-proto/src/http/range.rs "${proto_tests[@]}" ;;
    hub) run hub -p cport-proto -f crates/cport-proto/src/chat/hub.rs "${proto_tests[@]}" ;;
    proto) run proto -p cport-proto "${proto_tests[@]}" ;;
    proto-framing) run proto-framing -p cport-proto -f crates/cport-proto/src/framing.rs -f 'crates/cport-proto/src/framing/*.rs' $(proto_only framing) ;;
    proto-chat) run proto-chat -p cport-proto -f crates/cport-proto/src/chat/command.rs $(proto_only chat) ;;
    proto-http-request) run proto-http-request -p cport-proto -f crates/cport-proto/src/http/request.rs -f crates/cport-proto/src/http/error.rs $(proto_only http) ;;
    proto-http-response) run proto-http-response -p cport-proto -f crates/cport-proto/src/http/response.rs -f crates/cport-proto/src/http/conditional.rs -f crates/cport-proto/src/http/digest.rs $(proto_only http) ;;
    proto-http-stream) run proto-http-stream -p cport-proto -f crates/cport-proto/src/http/stream.rs -f crates/cport-proto/src/http/chunked.rs $(proto_only http) ;;
    proto-ws) run proto-ws -p cport-proto -f 'crates/cport-proto/src/ws/*.rs' $(proto_only ws) ;;
    proto-game) run proto-game -p cport-proto -f 'crates/cport-proto/src/game/*.rs' $(proto_only game) ;;
    sched) run sched -p cport -f crates/cport/src/sched.rs -F 'dispatch|promote' -- --lib --test threads --test workers ;;
    sched-all) run sched-all -p cport -f crates/cport/src/sched.rs -- --lib --test threads --test workers ;;
    handle) run handle -p cport -f crates/cport/src/handle.rs -- --lib --test ops --test errors --test fd_leaks ;;
    port) run port -p cport -f crates/cport/src/port.rs ;;
    # The queue is sans-I/O and its unit tests drive it directly; a survivor
    # of those is then retried against the sessions and echo tests
    # (`queue-full` with MUTANTS_ARGS=--iterate) before it counts as missed.
    queue) run queue -p cport-server -f 'crates/cport-server/src/queue.rs' -- --lib ;;
    queue-full) run queue -p cport-server -f 'crates/cport-server/src/queue.rs' -- --lib --test sessions --test echo ;;
    broadcast) run broadcast -p cport-server -f crates/cport-server/src/session.rs -f crates/cport-server/src/server.rs -F broadcast -- --test sessions ;;
    files) run files -p cport-http -f crates/cport-http/src/files.rs -F 'find|resolve|open_any|open_file|io_status' -- --lib --test http --test refusals ;;
    files-all) run files-all -p cport-http -f crates/cport-http/src/files.rs -- --lib --test http --test refusals ;;
    ci) ci ;;
    *)
        echo "unknown scope $1" >&2
        exit 2
        ;;
    esac
}

# The CI slice, bounded by construction: the mutants in the lines the last
# commit changed in the invariant files (path, range, hub); when it changed
# none, all of their mutants. Either way at most CI_MAX of them run: a shard
# picked by the commit hash, so successive commits cover different ones.
# Any surviving mutant fails the run.
ci() {
    local files=(
        crates/cport-proto/src/http/path.rs
        crates/cport-proto/src/http/range.rs
        crates/cport-proto/src/chat/hub.rs
    )
    local max="${CI_MAX:-5}" diff sel=() n shards k
    diff="$(mktemp)"
    git diff HEAD~1 -- "${files[@]}" >"$diff" 2>/dev/null || true
    if [[ -s "$diff" ]]; then
        sel=(--in-diff "$diff")
    else
        for f in "${files[@]}"; do
            sel+=(-f "$f")
        done
    fi
    n="$(cargo mutants --list -p cport-proto "${sel[@]}" | wc -l)"
    if ((n == 0)); then
        echo "mutants: nothing to mutate in the slice" >&2
        rm -f "$diff"
        return
    fi
    shards=$(((n + max - 1) / max))
    k=$((16#$(git rev-parse --short=7 HEAD) % shards))
    echo "mutants: shard $k/$shards of $n mutants" >&2
    local rc=0
    run ci -p cport-proto "${sel[@]}" --shard "$k/$shards" -- --lib || rc=$?
    rm -f "$diff"
    return "$rc"
}

if (($# == 0)); then
    set -- path range hub sched broadcast files queue sched-all files-all handle proto port
fi
# Fewer property-test cases per mutant (the tests' own fixed-count runs,
# `coverage::run_with_coverage`, keep theirs); the CI slice keeps the
# default. Retry survivors with the default before counting them missed.
if [[ "$*" != ci ]]; then
    export PROPTEST_CASES="${PROPTEST_CASES:-32}"
fi
# Every scope runs even when one has survivors; the exit status is the
# worst: 0 all caught, else cargo-mutants' own (2: a mutant survived).
status=0
for s in "$@"; do
    scope "$s" || status=$?
done
exit "$status"
