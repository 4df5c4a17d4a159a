#!/usr/bin/env python3
"""Two or more smsp-actors builds or option sets, side by side: medians.

Usage: compare_builds.py LABEL=BINDIR=ARGS [LABEL=BINDIR=ARGS ...]
                         [--mix MIX] [--k 1,16] [--rounds N] [--seconds S]
                         [-c CONNECTIONS] [--bench PATH]

Each variant is a label, a directory holding smsp-actors, and the extra
server arguments (space-separated, may be empty), e.g.

  compare_builds.py "before=/tmp/old/bin=--sync off" \\
                    "after=build/bin=--sync off" \\
                    "scheduler=build/bin=--sync off --actors scheduler"

Every variant's server starts once (--pwhash min, a temporary data dir, a
free loopback port); then for each K the same smsp-bench load runs against
each in turn, round after round (A B C A B C ...), so that the shared
machine's drift hits all alike, and the medians are printed. Each round
registers fresh users (its own --user-prefix). A benchmark, not a test: it
fails only when a server does not start or smsp-bench reports an error.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench_support import free_port, wait_port

ap = argparse.ArgumentParser(
    description="smsp-actors builds or option sets side by side")
ap.add_argument("variants", nargs="+", help="LABEL=BINDIR=SERVER ARGS")
ap.add_argument("--mix", default="mail")
ap.add_argument("--k", default="1,16", help="pipeline depths, comma-separated")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=3)
ap.add_argument("-c", "--connections", type=int, default=50)
ap.add_argument("--bench", default="build/bin/smsp-bench")
args = ap.parse_args()
if args.rounds < 3:
    sys.exit("compare_builds.py: --rounds must be at least 3 (medians)")


def main():
    tmp = tempfile.mkdtemp(prefix="smsp-builds.")
    procs = []
    results = {}
    try:
        servers = {}
        for v in args.variants:
            label, bindir, extra = v.split("=", 2)
            port = free_port()
            proc = subprocess.Popen(
                [os.path.join(bindir, "smsp-actors"), "--port", str(port),
                 "--pwhash", "min", "--data-dir", os.path.join(tmp, label),
                 "--log-level", "warn"] + extra.split(),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            if not wait_port(port, proc):
                sys.exit(f"compare_builds.py: {label} did not start")
            servers[label] = (port, proc)
        for k in args.k.split(","):
            for r in range(args.rounds):
                for label, (port, proc) in servers.items():
                    out = subprocess.run(
                        [args.bench, "--port", str(port), "--mix", args.mix,
                         "-c", str(args.connections), "-k", k, "-d",
                         str(args.seconds), "--warmup", "0.5", "--json",
                         "--server-pid", str(proc.pid), "--user-prefix",
                         f"r{r}k{k}"],
                        capture_output=True, text=True)
                    if out.returncode != 0:
                        sys.exit(f"compare_builds.py: smsp-bench failed "
                                 f"against {label}:\n{out.stderr[-2000:]}")
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    results.setdefault((k, label), []).append(res)
                    print(f"  K={k} round {r + 1} {label}: "
                          f"{res['cycles_per_s']:.0f} cycles/s, p99 "
                          f"{res['latency_us']['p99'] / 1000:.2f} ms",
                          flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"mix {args.mix}, {args.connections} connections, {args.seconds} s "
          f"x {args.rounds} rounds, medians; server CPU in cores")
    print()
    print("| variant | K | cycles/s | requests/s | p99 ms | server CPU |")
    print("|---|---|---|---|---|---|")
    for (k, label), runs in results.items():
        def med(f):
            return statistics.median(f(x) for x in runs)
        print(f"| {label} | {k} | {med(lambda x: x['cycles_per_s']):.0f} | "
              f"{med(lambda x: x['requests_per_s']):.0f} | "
              f"{med(lambda x: x['latency_us']['p99']) / 1000:.2f} | "
              f"{med(lambda x: x.get('server_cpu_share', 0)):.2f} |")


if __name__ == "__main__":
    main()
