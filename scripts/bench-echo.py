#!/usr/bin/env python3
"""Echo benchmark suite: cport beside its peers, in one run.

Builds everything in release, pins each server to core 0 and the load
generator (`cport bench echo`, on the completion port) to core 1, and runs the
servers in alternating rounds at each connection count and message size.
Prints messages/s with the ratio to the peer (`--peer`, tokio unless told), server CPU time per echoed
message, system calls per message (perf, when it works here), server RSS and
p99 latency; medians over the rounds.

    scripts/bench-echo.py [--conns 1,50,500,5000,15000] [--sizes 64,4096] [--duration 10]
                          [--rounds 3] [--servers cport-uring,cport-epoll,tokio,c-uring]
                          [--json FILE]

`cport-base` runs another build of cport (the path in CPORT_BASE) on
io_uring, for a before/after of a change in the same run.

Thousands of connections need as many descriptors in the server and in the
load generator: the script raises its soft RLIMIT_NOFILE to the hard limit
(the servers and the client inherit it), says so, and skips (with a note)
any connection count that still does not fit.
"""
import argparse, json, os, resource, shutil, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def build(servers):
    sh("cargo", "build", "--release", "-q", "-p", "cport-cli", "-p", "tokio-echo", "-p", "cport", "--example", "echo",
       "--bin", "cport", "--bin", "tokio-echo")
    if "c-uring" in servers:
        # The C reference loop needs liburing (apt: liburing-dev).
        sh("cc", "-O2", "-o", os.path.join(REL, "c-uring-echo"), "peers/c-uring-echo/echo.c", "-luring")


def server_cmd(name, port):
    addr = f"127.0.0.1:{port}"
    cport = os.path.join(REL, "cport")
    return {
        "cport-uring": ([cport, "echo", "--listen", addr, "--threads", "1", "--backend", "uring"], {}),
        # The blocked-thread hand-off turned off: what its monitor costs (issue 14).
        "cport-uring-nohandoff": ([cport, "echo", "--listen", addr, "--threads", "1", "--backend", "uring"],
                                  {"CPORT_HANDOFF": "off"}),
        # A/B across commits: another build of cport (CPORT_BASE=path/to/cport), io_uring.
        "cport-base": ([os.environ.get("CPORT_BASE", cport), "echo", "--listen", addr, "--threads", "1",
                        "--backend", "uring"], {}),
        "cport-base-epoll": ([os.environ.get("CPORT_BASE", cport), "echo", "--listen", addr, "--threads", "1"],
                             {"CPORT_BACKEND": "epoll"}),
        # As issue 3 asks: the same program, steered to epoll by the environment.
        "cport-epoll": ([cport, "echo", "--listen", addr, "--threads", "1"], {"CPORT_BACKEND": "epoll"}),
        # The receive pool at a hand-picked fixed size (4,096 buffers: the size before it sized itself).
        "cport-uring-pool4096": ([cport, "echo", "--listen", addr, "--threads", "1", "--backend", "uring",
                                  "--recv-buffers", "4096"], {}),
        "cport-uring-pool16384": ([cport, "echo", "--listen", addr, "--threads", "1", "--backend", "uring",
                                   "--recv-buffers", "16384"], {}),
        # Self-sizing up to 16,384 (the default stops at 4,096).
        "cport-uring-grow16384": ([cport, "echo", "--listen", addr, "--threads", "1", "--backend", "uring",
                                   "--recv-pool-max", "16384"], {}),
        "cport-example": ([os.path.join(REL, "examples", "echo"), addr, "1"], {}),
        "cport-example-2t": ([os.path.join(REL, "examples", "echo"), addr, "2"], {}),
        "cport-example-unbatched": ([os.path.join(REL, "examples", "echo"), addr, "1", "unbatched"], {}),
        "tokio": ([os.path.join(REL, "tokio-echo"), addr, "1"], {}),
        "c-uring": ([os.path.join(REL, "c-uring-echo"), addr], {}),
        "c-uring-coop": ([os.path.join(REL, "c-uring-echo"), addr], {"C_URING_COOP": "1"}),
    }[name]


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
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# Descriptors a process needs beside its connections (listener, ring, eventfds, std streams).
FD_SPARE = 64


def raise_fd_limit(want):
    """Raises the soft RLIMIT_NOFILE as far as allowed; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else max(soft, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
            print(f"note: RLIMIT_NOFILE raised to {soft} (hard limit {hard})", file=sys.stderr)
        except (ValueError, OSError) as e:
            print(f"note: cannot raise RLIMIT_NOFILE above {soft}: {e}", file=sys.stderr)
    return soft


def perf_works():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"], capture_output=True)
    return r.returncode == 0


WARMUP_PER_1000 = [1.0]


def warmup_for(conns):
    """Seconds before the measured window: connection setup must be over
    (thousands of connects take seconds on a loaded machine)."""
    return 0.0 if conns < 1000 else 1.0 + WARMUP_PER_1000[0] * conns / 1000


def one_run(name, conns, size, duration, use_perf, port):
    cmd, env = server_cmd(name, port)
    srv = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, **env})
    client = None
    try:
        wait_listening(port, srv)
        warmup = warmup_for(conns)
        client = subprocess.Popen(["taskset", "-c", "1", os.path.join(REL, "cport"), "bench", "echo", "--target",
                                   f"127.0.0.1:{port}", "--conns", str(conns), "--size", str(size), "--duration",
                                   f"{duration}s", "--warmup", f"{warmup}s", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Server CPU and system calls are taken over the client's measured
        # window only (after the warm-up that covers connection setup).
        time.sleep(warmup)
        perf = None
        if use_perf:
            perf = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p", str(srv.pid),
                                     "--", "sleep", str(duration)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True)
        cpu0 = cpu_seconds(srv.pid)
        time.sleep(duration)
        cpu1 = cpu_seconds(srv.pid)
        out, err = client.communicate(timeout=duration + warmup + 120)
        if client.returncode != 0:
            raise RuntimeError(f"bench client failed: {err.strip()[-500:]}")
        rep = json.loads(out.strip().splitlines()[-1])
        syscalls = None
        if perf is not None:
            err = perf.communicate()[1]
            for line in err.splitlines():
                parts = line.split(",")
                if len(parts) > 2 and "raw_syscalls" in line and parts[0].strip().isdigit():
                    syscalls = int(parts[0])
        if rep["messages"] == 0:
            # Connection setup outlasted the warm-up: nothing to divide by.
            print(f"note: {name} at {conns} connections echoed nothing in its window; "
                  f"raise --warmup-per-1000", file=sys.stderr)
            return {"rate": None, "cpu_us_per_msg": None, "syscalls_per_msg": None, "rss_kib": rss_kib(srv.pid),
                    "p99_us": None, "client_saturated": rep["client_saturated"],
                    "errors": rep["errors"] + rep["connect_errors"]}
        msgs = rep["messages"]
        return {
            "rate": rep["rate"],
            "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / msgs,
            "syscalls_per_msg": (syscalls / msgs) if syscalls is not None else None,
            "rss_kib": rss_kib(srv.pid),
            "p99_us": rep["p99_us"],
            "client_saturated": rep["client_saturated"],
            "errors": rep["errors"] + rep["connect_errors"],
        }
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()


def med(rows, key):
    vals = [r[key] for r in rows if r[key] is not None]
    return statistics.median(vals) if vals else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", default="1,50,500,5000,15000")
    ap.add_argument("--sizes", default="64,4096")
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="cport-uring,cport-epoll,tokio")
    ap.add_argument("--peer", default="tokio",
                    help="the server the ratio columns compare with (e.g. c-uring, the C io_uring loop)")
    ap.add_argument("--json", help="also write the table as JSON here")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--base-port", type=int, default=7400,
                    help="first loopback port; each run takes the next one (give concurrent runs distinct ranges)")
    ap.add_argument("--warmup-per-1000", type=float, default=1.0,
                    help="seconds of warm-up per 1,000 connections (plus 1 s) before the measured window")
    ap.add_argument("--port-span", type=int, default=100,
                    help="how many ports from --base-port the runs may use (they wrap around)")
    a = ap.parse_args()
    servers = a.servers.split(",")
    WARMUP_PER_1000[0] = a.warmup_per_1000
    if not a.no_build:
        build(servers)
    use_perf = perf_works()
    if not use_perf:
        print("note: perf cannot count raw_syscalls here; system calls per message are not shown", file=sys.stderr)
    results = []
    runs_done = 0
    wanted = [int(c) for c in a.conns.split(",")]
    limit = raise_fd_limit(max(wanted) + FD_SPARE)
    for conns in wanted:
        if limit != resource.RLIM_INFINITY and conns + FD_SPARE > limit:
            print(f"note: {conns} connections skipped: RLIMIT_NOFILE is {limit} (the hard limit); "
                  f"raise it (e.g. `prlimit --nofile={conns + FD_SPARE}` as root) to run this row", file=sys.stderr)
            continue
        for size in map(int, a.sizes.split(",")):
            runs = {s: [] for s in servers}
            for rnd in range(a.rounds):
                order = servers if rnd % 2 == 0 else list(reversed(servers))
                for s in order:
                    # Each run takes the next port, wrapping within the span
                    # given (SO_REUSEADDR lets a port come round again).
                    runs_done += 1
                    port = a.base_port + runs_done % a.port_span
                    runs[s].append(one_run(s, conns, size, a.duration, use_perf, port))
            base = med(runs[a.peer], "rate") if a.peer in runs else None
            base_cpu = med(runs[a.peer], "cpu_us_per_msg") if a.peer in runs else None
            base_p99 = med(runs[a.peer], "p99_us") if a.peer in runs else None
            for s in servers:
                row = {"server": s, "conns": conns, "size": size}
                for k in ("rate", "cpu_us_per_msg", "syscalls_per_msg", "rss_kib", "p99_us"):
                    row[k] = med(runs[s], k)
                row["client_saturated"] = any(r["client_saturated"] for r in runs[s])
                row["errors"] = sum(r["errors"] for r in runs[s])
                row["rate_vs_tokio"] = row["rate"] / base if base and row["rate"] is not None else None
                row["cpu_vs_tokio"] = (row["cpu_us_per_msg"] / base_cpu
                                       if base_cpu and row["cpu_us_per_msg"] is not None else None)
                row["p99_vs_peer"] = row["p99_us"] / base_p99 if base_p99 and row["p99_us"] is not None else None
                row["peer"] = a.peer
                results.append(row)
                print_row(row)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "rounds": a.rounds, "duration": a.duration, "rows": results}, f, indent=1)


HEADER_DONE = [False]


def print_row(r):
    if not HEADER_DONE[0]:
        peer = "x " + r["peer"][:6]
        print(f"{'server':<22}{'conns':>6}{'size':>6}{'msg/s':>11}{peer:>9}{'CPU µs/msg':>11}{peer:>9}"
              f"{'sys/msg':>8}{'RSS KiB':>9}{'p99 µs':>8}{peer:>9}")
        HEADER_DONE[0] = True
    f = lambda v, fmt: (fmt % v) if v is not None else "-"
    print(f"{r['server']:<22}{r['conns']:>6}{r['size']:>6}{f(r['rate'], '%.0f'):>11}{f(r['rate_vs_tokio'], '%.2f'):>9}"
          f"{f(r['cpu_us_per_msg'], '%.2f'):>11}{f(r['cpu_vs_tokio'], '%.2f'):>9}{f(r['syscalls_per_msg'], '%.2f'):>8}"
          f"{f(r['rss_kib'], '%d'):>9}{f(r['p99_us'], '%d'):>8}{f(r['p99_vs_peer'], '%.2f'):>9}"
          + ("  (client saturated)" if r["client_saturated"] else "") + (f"  errors={r['errors']}" if r["errors"] else ""),
          flush=True)


def machine():
    return {"nproc": os.cpu_count(), "kernel": os.uname().release}


if __name__ == "__main__":
    main()
