#!/usr/bin/env python3
"""The core's syscall layer, before and after, on the epoll echo hot path.

Runs two builds of the core's echo example (`crates/cport/examples/echo.rs`:
pooled receives and sends on one port, no server layer) on epoll
(CPORT_BACKEND=epoll), in alternating rounds, with `scripts/bench-echo.py`'s
runner: server on core 0, `cport bench echo` on core 1, medians over the
rounds. Prints each build's messages/s and server CPU per message, and the
ratio new / base.

    scripts/bench-syscall-layer.py --base path/to/old/examples/echo
        [--new target/release/examples/echo] [--loadgen path/to/cport]
        [--conns 50,500] [--sizes 64] [--duration 5] [--rounds 3] [--base-port 7800]

Build each side with `cargo build --release -p cport --example echo` (the
base from a checkout of the older commit, e.g. `git worktree add`).
"""
import argparse, importlib.util, os, statistics, sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_echo", os.path.join(HERE, "bench-echo.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the older build of examples/echo")
    ap.add_argument("--new", default=os.path.join(bench.REL, "examples", "echo"))
    ap.add_argument("--loadgen", default=os.path.join(bench.REL, "cport"),
                    help="a cport binary whose `bench echo` drives both (the same for both sides)")
    ap.add_argument("--conns", default="50,500")
    ap.add_argument("--sizes", default="64")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base-port", type=int, default=7800)
    a = ap.parse_args()

    binaries = {"base": a.base, "new": a.new}
    bench.server_cmd = lambda name, port: ([binaries[name], f"127.0.0.1:{port}", "1"], {"CPORT_BACKEND": "epoll"})
    # `one_run` starts the load generator as REL/cport.
    bench.REL = os.path.dirname(os.path.abspath(a.loadgen))
    if os.path.basename(a.loadgen) != "cport":
        sys.exit("--loadgen must name a binary called cport")
    print(f"load average {os.getloadavg()[0]:.1f} at start", flush=True)
    port = a.base_port
    for conns in map(int, a.conns.split(",")):
        for size in map(int, a.sizes.split(",")):
            runs = {"base": [], "new": []}
            for rnd in range(a.rounds):
                for name in (["base", "new"] if rnd % 2 == 0 else ["new", "base"]):
                    port += 1
                    runs[name].append(bench.one_run(name, conns, size, a.duration, False, port))
            m = {n: {k: statistics.median(r[k] for r in rs) for k in ("rate", "cpu_us_per_msg")}
                 for n, rs in runs.items()}
            errors = sum(r["errors"] for rs in runs.values() for r in rs)
            print(f"conns {conns:>4} size {size:>5}: base {m['base']['rate']:>9.0f} msg/s "
                  f"{m['base']['cpu_us_per_msg']:.2f} µs/msg | new {m['new']['rate']:>9.0f} msg/s "
                  f"{m['new']['cpu_us_per_msg']:.2f} µs/msg | new/base rate "
                  f"{m['new']['rate'] / m['base']['rate']:.3f}, CPU "
                  f"{m['new']['cpu_us_per_msg'] / m['base']['cpu_us_per_msg']:.3f}"
                  + (f"  errors={errors}" if errors else ""), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
