#!/usr/bin/env python3
"""Worker threads for echo and chat: 1 vs 2 vs 2 x CPUs, and `cport serve`'s
shared port, in one run (issue 14: the servers' default thread count).

Each server is pinned to core 0 and the load (`cport bench echo` or `cport
bench chat`, closed loop for echo, open loop for chat) to core 1, in
alternating rounds; prints messages/s and server CPU per message, medians
over the rounds, and each as a ratio to 1 thread.

    scripts/bench-threads.py [--rounds 3] [--duration 4] [--conns 50]
        [--chat-conns 200] [--chat-rate 20] [--base-port 7560] [--no-build]

Servers (echo; chat likewise with `cport chat`):
  1t        `cport echo --threads 1` (the default for one server)
  2t        `--threads 2` (concurrency 2)
  2xcpu     `--threads 2*CPUs --concurrency CPUs` (the I/O models' rule)
  serve     `cport serve`: every server on one port, its pool sized by the
            rule (pinned to one core: concurrency 1, 2 threads)
"""
import argparse, json, os, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# CPORT_BIN runs another build (a debug one for a smoke run; the figures
# that count come from release).
CPORT = os.environ.get("CPORT_BIN") or os.path.join(ROOT, "target", "release", "cport")
TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_listening(port, proc, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def server_cmd(app, name, port, data):
    addr = f"127.0.0.1:{port}"
    if name == "serve":
        p = port
        return [CPORT, "serve", "--echo", f"127.0.0.1:{p}", "--chat", f"127.0.0.1:{p + 1}",
                "--game", f"127.0.0.1:{p + 2}", "--http", f"127.0.0.1:{p + 3}", "--data", data]
    threads = {"1t": ["--threads", "1"], "2t": ["--threads", "2"],
               "2xcpu": ["--threads", str(2 * CPUS), "--concurrency", str(CPUS)]}[name]
    extra = ["--data", data] if app == "chat" else []
    return [CPORT, app, "--listen", addr] + threads + extra


def one(app, name, port, a):
    with tempfile.TemporaryDirectory(prefix="cport-bench-threads-") as data:
        cmd = ["taskset", "-c", "0"] + server_cmd(app, name, port, data)
        srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = port + (1 if app == "chat" and name == "serve" else 0)
        try:
            wait_listening(target, srv)
            load = ["taskset", "-c", "1", CPORT, "bench", app, "--target", f"127.0.0.1:{target}",
                    "--duration", f"{a.duration}s", "--warmup", "1s", "--json"]
            if app == "echo":
                load += ["--conns", str(a.conns)]
            else:
                load += ["--conns", str(a.chat_conns), "--rate", str(a.chat_rate)]
            c0 = cpu_secs(srv.pid)
            out = subprocess.run(load, check=True, capture_output=True, text=True).stdout
            c1 = cpu_secs(srv.pid)
        finally:
            srv.terminate()
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
    rep = json.loads(out.strip().splitlines()[-1])
    msgs = rep.get("messages") or rep.get("delivered") or 0
    # CPU over the warm-up and the run, per message of the measured window.
    window = a.duration + 1
    return {"rate": rep.get("rate", 0.0), "cpu_us": (c1 - c0) * 1e6 / max(msgs * window / a.duration, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--chat-conns", type=int, default=200)
    ap.add_argument("--chat-rate", type=int, default=20)
    ap.add_argument("--apps", default="echo,chat")
    ap.add_argument("--servers", default="1t,2t,2xcpu,serve")
    ap.add_argument("--base-port", type=int, default=7560)
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build and not os.environ.get("CPORT_BIN"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "cport-cli", "--bin", "cport"], check=True, cwd=ROOT)
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) at start; {CPUS} CPUs", flush=True)
    servers = a.servers.split(",")
    for app in a.apps.split(","):
        res = {s: [] for s in servers}
        for r in range(a.rounds):
            order = servers if r % 2 == 0 else list(reversed(servers))
            for i, s in enumerate(order):
                res[s].append(one(app, s, a.base_port + 5 * i, a))
        base = statistics.median(x["rate"] for x in res[servers[0]]) or 1
        base_cpu = statistics.median(x["cpu_us"] for x in res[servers[0]]) or 1
        print(f"{app}: {'server':<8}{'msg/s':>12}{'x ' + servers[0]:>10}{'CPU µs/msg':>12}{'x ' + servers[0]:>10}")
        for s in servers:
            rate = statistics.median(x["rate"] for x in res[s])
            cpu = statistics.median(x["cpu_us"] for x in res[s])
            print(f"{'':6}{s:<8}{rate:>12.0f}{rate / base:>10.2f}{cpu:>12.2f}{cpu / base_cpu:>10.2f}")
    print(f"load: {os.getloadavg()[0]:.2f} (1-min average) at the end", flush=True)


if __name__ == "__main__":
    main()
