#!/usr/bin/env python3
"""Introspection's cost on the echo benchmark: `cport echo` with it on
(the default) and off (CPORT_INTROSPECT=off), in alternating rounds of one
run. The server is pinned to core 0, the load (`cport bench echo`) to
core 1; the figure is server CPU time (user + system, from /proc) per echoed
message, median over the rounds, and the ratio on/off. The load average is
printed beside it: on a busy machine take the ratio, not the absolute.

    scripts/bench-introspect.py [--conns 50] [--size 64] [--duration 5] [--rounds 5] [--no-build]
"""
import argparse, json, os, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPORT = os.path.join(ROOT, "target", "release", "cport")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def round_once(introspect, a):
    port = free_port()
    env = dict(os.environ, CPORT_INTROSPECT=introspect, RUST_LOG="warn")
    srv = subprocess.Popen(["taskset", "-c", "0", CPORT, "echo", "--listen", f"127.0.0.1:{port}", "--backend", "uring"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        srv.stdout.readline()  # the listening line
        bench = ["taskset", "-c", "1", CPORT, "bench", "echo", "--target", f"127.0.0.1:{port}", "--conns", str(a.conns),
                 "--size", str(a.size), "--duration", f"{a.duration}s", "--warmup", "1s", "--json"]
        # CPU counted over the whole run (warm-up included) against the
        # messages of the whole run: the bench reports the measured window,
        # so scale by its share of the run.
        c0 = cpu_secs(srv.pid)
        out = subprocess.run(bench, check=True, capture_output=True, text=True, timeout=a.duration + 60).stdout
        c1 = cpu_secs(srv.pid)
        r = json.loads(out.strip().splitlines()[-1])
        msgs = r["messages"] * (a.duration + 1) / a.duration
        return (c1 - c0) / msgs * 1e6, r["messages"] / a.duration
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-build", action="store_true", help="use target/release/cport as it is")
    a = p.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cport-cli", "--bin", "cport"], check=True, cwd=ROOT)
    res = {"on": [], "off": []}
    for i in range(a.rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for mode in order:
            res[mode].append(round_once(mode, a))
            print(f"round {i + 1} {mode:>3}: {res[mode][-1][0]:.3f} us CPU/msg, {res[mode][-1][1]:,.0f} msg/s", file=sys.stderr)
    med = {m: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for m, v in res.items()}
    load = os.getloadavg()
    print(f"echo, {a.conns} connections, {a.size} B, {a.rounds} rounds of {a.duration} s, load average {load[0]:.1f}")
    for m in ("on", "off"):
        print(f"  introspection {m:>3}: {med[m][0]:.3f} us server CPU per message, {med[m][1]:,.0f} msg/s")
    print(f"  CPU per message on/off: {med['on'][0] / med['off'][0]:.3f}; msg/s on/off: {med['on'][1] / med['off'][1]:.3f}")


if __name__ == "__main__":
    main()
