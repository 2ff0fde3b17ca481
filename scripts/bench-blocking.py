#!/usr/bin/env python3
"""Blocking handlers: cport's hand-off beside tokio, in one run.

A request/response service (16-byte requests) where one request in
`--block-every` (default 20: 5%) makes the server block (`--block sleep`,
2 ms by default, or `--block fsync`: 4 KiB written, fsync, read back); the
rest answer at once. Servers, each pinned to core 0 with the load
(`cport bench blocking`, closed loop) on core 1, in alternating rounds:

  cport-auto    `cport blocking --handoff auto`  automatic hand-off (the default)
  cport-scope   `cport blocking --handoff scope` Port::blocking around the call
  cport-off     `cport blocking --handoff off`   the blocked worker keeps its slot
  tokio-inline  tokio, the task blocks its worker thread
  tokio-spawn   tokio, the call goes to spawn_blocking

cport runs `--threads` workers (default 8) with concurrency = the CPUs the
server may use (1 when pinned to one core); tokio runs its default worker
count (the same CPU count). Prints requests/s, the p99 of the requests that
did not block, and the ratios the hand-off targets are stated in; medians
over the rounds.

    scripts/bench-blocking.py [--rounds 3] [--duration 5] [--conns 64]
        [--block sleep|fsync] [--block-ms 2] [--threads 8] [--base-port 7500]
        [--servers cport-auto,...] [--json FILE]
"""
import argparse, json, os, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
ALL = ["cport-auto", "cport-scope", "cport-off", "tokio-inline", "tokio-spawn"]


def sh(*cmd):
    subprocess.run(cmd, check=True, cwd=ROOT)


def server_cmd(name, port, a):
    addr = f"127.0.0.1:{port}"
    if name.startswith("cport-"):
        mode = name.split("-", 1)[1]
        return [os.path.join(REL, "cport"), "blocking", "--listen", addr, "--threads", str(a.threads),
                "--handoff", mode, "--block", a.block, "--block-time", f"{a.block_ms}ms",
                "--backend", "uring", "--stats-every", "1s"]
    mode = {"tokio-inline": "inline", "tokio-spawn": "spawn_blocking"}[name]
    return [os.path.join(REL, "tokio-blocking"), addr, mode, a.block, str(a.block_ms)]


def wait_listening(port, proc, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} never listened")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def one(name, port, a):
    cmd = ["taskset", "-c", "0"] + server_cmd(name, port, a)
    srv = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_listening(port, srv)
        cpu0 = cpu_seconds(srv.pid)
        load = ["taskset", "-c", "1", os.path.join(REL, "cport"), "bench", "blocking",
                "--target", f"127.0.0.1:{port}", "--conns", str(a.conns), "--block-every", str(a.block_every),
                "--duration", f"{a.duration}s", "--warmup", "1s", "--json"]
        out = subprocess.run(load, check=True, capture_output=True, text=True, cwd=ROOT).stdout
        cpu = cpu_seconds(srv.pid) - cpu0
        r = json.loads(out.strip().splitlines()[-1])
    finally:
        srv.terminate()
        try:
            rest, _ = srv.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            srv.kill()
            rest, _ = srv.communicate()
    stats = [l for l in (rest or "").splitlines() if l.startswith("{")]
    return {
        "rate": r["all"]["rate"],
        "fast_p99_us": r["fast_p99_us"],
        "fast_p50_us": r["fast_p50_us"],
        "blocking_p99_us": r["blocking_p99_us"],
        "errors": r["all"]["errors"],
        "server_cpu_per_req_us": cpu / max(r["all"]["messages"], 1) * 1e6 if r["all"]["messages"] else 0,
        "port": json.loads(stats[-1]) if stats else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--block-every", type=int, default=20)
    ap.add_argument("--block", choices=["sleep", "fsync"], default="sleep")
    ap.add_argument("--block-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--base-port", type=int, default=7500)
    ap.add_argument("--servers", default=",".join(ALL))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    servers = a.servers.split(",")
    if not a.no_build:
        sh("cargo", "build", "--release", "-q", "-p", "cport-cli", "-p", "tokio-blocking",
           "--bin", "cport", "--bin", "tokio-blocking")
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) at start", flush=True)
    results = {s: [] for s in servers}
    for rnd in range(a.rounds):
        for i, s in enumerate(servers if rnd % 2 == 0 else list(reversed(servers))):
            port = a.base_port + (rnd * len(servers) + i) % 100
            r = one(s, port, a)
            results[s].append(r)
            print(f"round {rnd + 1} {s:13} {r['rate']:9.0f} req/s  fast p99 {r['fast_p99_us']:6} µs  "
                  f"blocking p99 {r['blocking_p99_us']:6} µs  port {r['port']}", flush=True)
    med = {s: {k: statistics.median(x[k] for x in results[s]) for k in
               ("rate", "fast_p50_us", "fast_p99_us", "blocking_p99_us", "server_cpu_per_req_us")} for s in servers}
    print(f"\nload: {os.getloadavg()[0]:.2f} (1-min average) at end")
    print(f"{a.block} {a.block_ms} ms on 1 request in {a.block_every}, {a.conns} connections, "
          f"cport {a.threads} workers; medians of {a.rounds} rounds of {a.duration} s")
    print(f"{'server':13} {'req/s':>9} {'fast p50':>9} {'fast p99':>9} {'block p99':>10} {'CPU/req':>8}")
    for s in servers:
        m = med[s]
        print(f"{s:13} {m['rate']:9.0f} {m['fast_p50_us']:7.0f}µs {m['fast_p99_us']:7.0f}µs "
              f"{m['blocking_p99_us']:8.0f}µs {m['server_cpu_per_req_us']:6.1f}µs")
    def ratio(x, y, k="rate"):
        if x in med and y in med and med[y][k]:
            return med[x][k] / med[y][k]
        return None
    for label, v in (("hand-off / off (throughput, target >= 5)", ratio("cport-auto", "cport-off")),
                     ("hand-off / Port::blocking (throughput, target >= 0.8)", ratio("cport-auto", "cport-scope")),
                     ("hand-off / tokio spawn_blocking (throughput)", ratio("cport-auto", "tokio-spawn")),
                     ("hand-off / tokio spawn_blocking (fast p99, target <= 1)",
                      ratio("cport-auto", "tokio-spawn", "fast_p99_us"))):
        if v is not None:
            print(f"{label}: {v:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"args": vars(a), "rounds": results, "medians": med}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
