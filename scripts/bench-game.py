#!/usr/bin/env python3
"""The game server's 5,000-bot bar as an A/B of two `cport` binaries.

Each round starts one binary's `cport game` pinned to core 0 and
`cport bench game` (from the B binary, so both sides face the same bots)
pinned to core 1, then stops the server. Rounds alternate A, B, A, B, ...
and the medians of each side are printed with the load average, so a
change is judged as a ratio taken in one run.

    scripts/bench-game.py --a /tmp/cport-old --b target/release/cport \
        --bots 5000 --rounds 2 --duration 20s

One binary: pass the same path as --a and --b (or --b only). To compare
two bot clients against one server, pass the server as --a and --b and
the clients as --bots-a and --bots-b.
Ports: the server listens on 127.0.0.1:7850 (then 7851, ...).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FIELDS = [
    ("ticks", "ticks in the window"),
    ("tick_p50_us", "tick p50 µs"),
    ("tick_p99_us", "tick p99 µs"),
    ("tick_max_us", "tick max µs"),
    ("server_cpu_us_per_player_tick", "server CPU µs/player-tick"),
    ("own_p50_us", "own move p50 µs"),
    ("own_p99_us", "own move p99 µs"),
    ("neighbour_p50_us", "neighbour p50 µs"),
    ("neighbour_p99_us", "neighbour p99 µs"),
    ("down_bytes_per_bot", "B/s down per bot"),
    ("up_bytes_per_bot", "B/s up per bot"),
    ("down_bytes_per_whole_world_bot", "B/s down per whole-world bot"),
    ("desyncs", "desyncs"),
    ("disconnects", "disconnects"),
    ("chats_received", "chat lines heard"),
    ("client_cpu", "bots' core busy"),
]


def one_round(binary, bench, port, args):
    addr = f"127.0.0.1:{port}"
    # On a shared machine both sides may be given a higher priority, so
    # that what is compared is the code, not how many threads each side
    # has to win time slices with (the scheduler shares per thread).
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    server = subprocess.Popen(
        nice + ["taskset", "-c", args.server_cpu, binary, "game", "--listen", addr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        cmd = nice + [
            "taskset", "-c", args.bots_cpu, bench, "bench", "game",
            "--target", addr, "--bots", str(args.bots),
            "--input-rate", str(args.input_rate),
            "--duration", args.duration, "--warmup", args.warmup,
            "--whole-world-share", str(args.whole_world_share),
            "--json",
        ]
        if args.chat_chance is not None:
            cmd += ["--chat-chance", str(args.chat_chance)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not lines:
            sys.exit(f"bench gave no report: {out.stderr[-2000:]}")
        return json.loads(lines[-1])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", help="binary A (default: B)")
    p.add_argument("--b", default="target/release/cport", help="binary B")
    p.add_argument("--bots", type=int, default=5000)
    p.add_argument("--input-rate", type=float, default=10)
    p.add_argument("--duration", default="20s")
    p.add_argument("--warmup", default="5s")
    p.add_argument("--whole-world-share", type=float, default=0.002)
    p.add_argument("--chat-chance", type=float, default=None)
    p.add_argument("--bots-a", help="the bots' binary for side A (default: B's)")
    p.add_argument("--bots-b", help="the bots' binary for side B (default: B's)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--bots-cpu", default="1")
    p.add_argument("--port", type=int, default=7850)
    p.add_argument("--nice", type=int, default=0, help="run both sides at this niceness (negative: root)")
    args = p.parse_args()
    sides = {"A": args.a or args.b, "B": args.b}
    bench = {"A": args.bots_a or args.b, "B": args.bots_b or args.b}
    if sides["A"] == sides["B"] and bench["A"] == bench["B"]:
        sides = {"B": args.b}
    results = {k: [] for k in sides}
    port = args.port
    for r in range(args.rounds):
        for side, binary in sides.items():
            rep = one_round(binary, bench[side], port, args)
            port = args.port + (port - args.port + 1) % 50
            results[side].append(rep)
            print(f"round {r + 1} {side}: tick p99 {rep['tick_p99_us']} µs, "
                  f"{rep['server_cpu_us_per_player_tick']:.2f} µs/player-tick, "
                  f"own p99 {rep['own_p99_us']} µs, desyncs {rep['desyncs']}, "
                  f"disconnects {rep['disconnects']}, load {os.getloadavg()[0]:.1f}",
                  flush=True)
    print(f"\nmedians of {args.rounds} round(s), {args.bots} bots, load average {os.getloadavg()[0]:.1f}")
    head = f"{'':32}" + "".join(f"{k + ': ' + os.path.basename(v):>26}" for k, v in sides.items())
    print(head + ("        B/A" if len(sides) == 2 else ""))
    for key, name in FIELDS:
        med = {k: statistics.median(float(x[key]) for x in v) for k, v in results.items()}
        row = f"{name:32}" + "".join(f"{m:>26.2f}" for m in med.values())
        if len(sides) == 2 and med["A"]:
            row += f"{med['B'] / med['A']:>11.2f}"
        print(row)


if __name__ == "__main__":
    main()
