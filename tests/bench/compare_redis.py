#!/usr/bin/env python3
"""smsp-actors against Redis, side by side: the table of docs/BENCHMARKS.md.

Usage: compare_redis.py [--bin DIR] [--rounds N] [--seconds S]
                        [--pipelines 1,16] [--connections C] [--mix MIX]
                        [--pairs off,normal,full] [--json FILE]

Pairs (each server fresh, on a loopback port, in a temporary dir):
  off     smsp-actors --sync off     vs  Redis without persistence
  normal  smsp-actors --sync normal  vs  Redis AOF, appendfsync everysec
  full    smsp-actors --sync full    vs  Redis AOF, appendfsync always
smsp-actors runs with --pwhash min (set-up registers the bench users).

The same smsp-bench drives both (--target smsp / --target redis), the same
connections (-c, default 50), pipeline depth K and text size; the default
mix `mail` is MESSAGE, STORE (to self), COUNT, GETMSG, DELMSG for SMSP and
RPUSH, LLEN, LINDEX 0, LPOP for Redis, every reply checked. Within a pair
and K the two alternate (A B A B ..., --rounds each, at least 3), so a drift
of the shared machine hits both alike; the table gives medians, with the
ratio smsp/Redis of cycles/s. A benchmark, not a test: it asserts nothing
about speed, and fails only when a server does not start or a reply is
wrong.

Installs redis-server (apt-get) when it is missing; stops everything it
started, also on Ctrl-C.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

from bench_support import free_port, wait_port

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/bin")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--warmup", type=float, default=1)
ap.add_argument("--pipelines", default="1,16")
ap.add_argument("--connections", type=int, default=50)
ap.add_argument("--mix", default="mail", choices=["mail", "read", "count"])
ap.add_argument("--pairs", default="off,normal,full")
ap.add_argument("--json", help="also write every run's result here")
args = ap.parse_args()
if args.rounds < 3:
    sys.exit("compare_redis.py: --rounds must be at least 3 (medians)")
server_bin = os.path.abspath(os.path.join(args.bin, "smsp-actors"))
bench_bin = os.path.abspath(os.path.join(args.bin, "smsp-bench"))
for path in (server_bin, bench_bin):
    if not os.access(path, os.X_OK):
        sys.exit(f"compare_redis.py: {path} is missing: build it first "
                 "(cmake --build build -j2 --target smsp-actors smsp-bench)")

PAIRS = {
    "off": (["--sync", "off"], ["--appendonly", "no"],
            "--sync off", "no persistence"),
    "normal": (["--sync", "normal"],
               ["--appendonly", "yes", "--appendfsync", "everysec"],
               "--sync normal", "AOF everysec"),
    "full": (["--sync", "full"],
             ["--appendonly", "yes", "--appendfsync", "always"],
             "--sync full", "AOF always"),
}


def ensure_redis():
    if shutil.which("redis-server"):
        return
    print("redis-server is missing: installing it (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "redis-server"],
                   check=True, env=env)


started = []


def stop_all():
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
    for proc in started:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    started.clear()


def start(argv, port, tmp, name):
    log = open(os.path.join(tmp, name + ".log"), "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                            cwd=tmp)
    started.append(proc)
    if not wait_port(port, proc):
        stop_all()
        sys.exit(f"compare_redis.py: {name} did not start: see "
                 f"{os.path.join(tmp, name + '.log')}")
    return proc


def bench(target, port, pid, k):
    argv = [bench_bin, "--target", target, "--port", str(port), "--mix",
            args.mix, "-c", str(args.connections), "-k", str(k), "-d",
            str(args.seconds), "--warmup", str(args.warmup), "--json",
            "--server-pid", str(pid)]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        stop_all()
        sys.exit(f"compare_redis.py: smsp-bench failed ({' '.join(argv)}):\n"
                 f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ensure_redis()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results = []
    rows = []
    tmp = tempfile.mkdtemp(prefix="smsp-vs-redis.")
    try:
        for pair in args.pairs.split(","):
            smsp_args, redis_args, smsp_label, redis_label = PAIRS[pair]
            sp, rp = free_port(), free_port()
            smsp = start([server_bin, "--port", str(sp), "--pwhash", "min",
                          "--data-dir", os.path.join(tmp, pair + "-smsp"),
                          "--log-level", "warn"] + smsp_args,
                         sp, tmp, pair + "-smsp")
            rdir = os.path.join(tmp, pair + "-redis")
            os.makedirs(rdir)
            redis = start(["redis-server", "--port", str(rp), "--bind",
                           "127.0.0.1", "--save", "", "--dir", rdir,
                           "--maxclients", "10000"] + redis_args,
                          rp, tmp, pair + "-redis")
            for k in [int(x) for x in args.pipelines.split(",")]:
                got = {"smsp": [], "redis": []}
                for r in range(args.rounds):
                    for target, port, proc in (("smsp", sp, smsp),
                                               ("redis", rp, redis)):
                        res = bench(target, port, proc.pid, k)
                        res.update(pair=pair, round=r)
                        results.append(res)
                        got[target].append(res)
                        print(f"  {pair} K={k} round {r + 1} {target}: "
                              f"{res['cycles_per_s']:.0f} cycles/s, p99 "
                              f"{res['latency_us']['p99'] / 1000:.2f} ms",
                              flush=True)

                def med(target, f):
                    return statistics.median(f(x) for x in got[target])
                cyc = {t: med(t, lambda x: x["cycles_per_s"]) for t in got}
                p99 = {t: med(t, lambda x: x["latency_us"]["p99"] / 1000)
                       for t in got}
                cpu = {t: med(t, lambda x: x.get("server_cpu_share", 0))
                       for t in got}
                rows.append((f"{smsp_label} vs {redis_label}", k, cyc, p99,
                             cpu))
            stop_all()
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"mix {args.mix}, {args.connections} connections, {args.seconds} s "
          f"x {args.rounds} rounds, medians; server CPU in cores")
    print()
    print("| smsp-actors vs Redis | K | smsp cycles/s | Redis cycles/s | "
          "ratio | smsp p99 ms | Redis p99 ms | smsp CPU | Redis CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, k, cyc, p99, cpu in rows:
        print(f"| {label} | {k} | {cyc['smsp']:.0f} | {cyc['redis']:.0f} | "
              f"{cyc['smsp'] / cyc['redis']:.2f}x | {p99['smsp']:.2f} | "
              f"{p99['redis']:.2f} | {cpu['smsp']:.2f} | {cpu['redis']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
