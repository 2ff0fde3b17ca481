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
#   sched   the port's scheduler (dispatch, promotion)  cport unit tests, threads, workers
#   handle  the port's handle table                     cport unit tests, ops, errors, fd_leaks
#   port    the port                                    every cport test
#   queue   the server core's send queue                cport-server unit tests, sessions, echo
#   broadcast  Session::broadcast and its wrappers      cport-server sessions test
#   files   the HTTP server's file resolution           cport-http unit tests, http, refusals
#   ci      a bounded slice: mutants in lines changed since the previous
#           commit (in the scopes above), else range+path; fails on any survivor
#
# Environment: MUTANTS_OUT (default target/mutants) holds one mutants.out per
# scope; MUTANTS_JOBS (default 1: the machine is shared); MUTANTS_IN_PLACE=1
# mutates this tree instead of a copy (faster: reuses target/; CI only, do
# not edit the tree meanwhile).
set -euo pipefail
cd "$(dirname "$0")/.."

out_root="${MUTANTS_OUT:-target/mutants}"
jobs="${MUTANTS_JOBS:-1}"
list=()
if [[ "${1:-}" == "--list" ]]; then
    list=(--list)
    shift
fi

common=(--jobs "$jobs" --no-shuffle)
if [[ "${MUTANTS_IN_PLACE:-0}" == 1 ]]; then
    common+=(--in-place)
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

scope() {
    case "$1" in
    path) run path -p cport-proto -f crates/cport-proto/src/http/path.rs "${proto_tests[@]}" ;;
    range) run range -p cport-proto -f crates/cport-proto/src/http/range.rs "${proto_tests[@]}" ;;
    hub) run hub -p cport-proto -f crates/cport-proto/src/chat/hub.rs "${proto_tests[@]}" ;;
    proto) run proto -p cport-proto "${proto_tests[@]}" ;;
    sched) run sched -p cport -f crates/cport/src/sched.rs -- --lib --test threads --test workers ;;
    handle) run handle -p cport -f crates/cport/src/handle.rs -- --lib --test ops --test errors --test fd_leaks ;;
    port) run port -p cport -f crates/cport/src/port.rs ;;
    queue) run queue -p cport-server -f 'crates/cport-server/src/queue.rs' -- --lib --test sessions --test echo ;;
    broadcast) run broadcast -p cport-server -f crates/cport-server/src/session.rs -F broadcast -- --test sessions ;;
    files) run files -p cport-http -f crates/cport-http/src/files.rs -- --lib --test http --test refusals ;;
    ci) ci ;;
    *)
        echo "unknown scope $1" >&2
        exit 2
        ;;
    esac
}

# The CI slice: mutants in the lines the last commit changed, within the
# scoped files; when it changed none of them, the range and path rules (a
# minute or two). Any surviving mutant fails the run.
ci() {
    local files=(
        crates/cport-proto/src/http/path.rs
        crates/cport-proto/src/http/range.rs
        crates/cport-proto/src/chat/hub.rs
    )
    local diff
    diff="$(mktemp)"
    git diff HEAD~1 -- "${files[@]}" >"$diff" 2>/dev/null || true
    if [[ -s "$diff" ]]; then
        run ci -p cport-proto --in-diff "$diff" "${proto_tests[@]}"
    else
        run ci -p cport-proto -f "${files[0]}" -f "${files[1]}" "${proto_tests[@]}"
    fi
    rm -f "$diff"
}

if (($# == 0)); then
    set -- path range hub sched broadcast queue files handle proto port
fi
for s in "$@"; do
    scope "$s"
done
