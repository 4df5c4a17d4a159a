#!/usr/bin/env python3
"""Mailbox nodes: mail-cycle throughput and the cost of a remote hop.

Usage: cluster_bench.py [--bin DIR] [--rounds N] [--seconds S] [--sync MODE]
                        [--pipelines 1,16] [--nodes 0,1,2] [--no-latency]

Runs smsp-bench against a front with 0 mailbox nodes (every mailbox in the
front), 1 node and 2 nodes, each on fresh data dirs, all with the same
--sync on the front and on the nodes. Within each round the configurations
alternate (0 1 2 0 1 2 ...), so a drift of the shared machine hits them
alike; the table gives the median of the rounds and every round's figure.

  throughput: -w mailbox -c 50 -k K (K from --pipelines); one mail cycle is
              MESSAGE, STORE to self, GETMSG, DELMSG: cycles/s = req/s / 4.
  latency:    -w count -c 1 -k 1 with 0 and 1 node: one connection, one
              request at a time, so the latency is a pure round trip (and
              with a node, the front's hop to the node and back).

With nodes, every COUNT/GETMSG/DELMSG and the STORE's delivery go to the
user's node; MESSAGE stays in the front (the IMQ). The front's CPU is the
bench's --server-pid figure over the measured window; the nodes' CPU is
read from /proc over the whole smsp-bench call (setup and warmup included).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

from bench_support import free_port

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/bin")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--sync", default="normal")
ap.add_argument("--pipelines", default="1,16")
ap.add_argument("--nodes", default="0,1,2")
ap.add_argument("--no-latency", action="store_true")
args = ap.parse_args()
server = os.path.join(args.bin, "smsp-actors")
bench = os.path.join(args.bin, "smsp-bench")
CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_line(path, word, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            text = f.read()
        if word in text:
            return text
        if proc.poll() is not None:
            sys.exit(f"{path}: exited {proc.returncode} before '{word}'")
        time.sleep(0.05)
    sys.exit(f"{path}: no '{word}' within {timeout} s")


class Cluster:
    """A front with `nodes` mailbox nodes, each on a fresh data dir."""

    def __init__(self, nodes):
        self.dir = tempfile.mkdtemp(prefix="smsp-cluster-")
        self.nodes = []
        self.cmds = []
        addrs = []
        for i in range(nodes):
            port = free_port()
            cmd = [server, "node", "--port", str(port), "--sync", args.sync,
                   "--data-dir", os.path.join(self.dir, f"n{i}")]
            out = os.path.join(self.dir, f"n{i}.out")
            proc = subprocess.Popen(cmd, stdout=open(out, "w"),
                                    stderr=open(os.path.join(self.dir, f"n{i}.err"), "w"))
            wait_line(out, "listening", proc)
            self.nodes.append(proc)
            self.cmds.append(cmd)
            addrs += ["--mailbox-node", f"127.0.0.1:{port}"]
        cmd = [server, "--port", "0", "--pwhash", "min", "--sync", args.sync,
               "--data-dir", os.path.join(self.dir, "front"), *addrs]
        out = os.path.join(self.dir, "front.out")
        self.err = os.path.join(self.dir, "front.err")
        self.front = subprocess.Popen(cmd, stdout=open(out, "w"), stderr=open(self.err, "w"))
        self.cmds.append(cmd)
        self.port = int(wait_line(out, "listening", self.front).split(":")[-1])
        if nodes:
            deadline = time.monotonic() + 10
            while open(self.err).read().count(" up: ") < nodes:
                if time.monotonic() > deadline:
                    sys.exit("nodes not up: " + open(self.err).read())
                time.sleep(0.05)

    def run(self, *bench_args):
        cmd = [bench, "--port", str(self.port), "--server-pid", str(self.front.pid),
               "--json", *bench_args]
        before = [cpu_s(n.pid) for n in self.nodes]
        t0 = time.monotonic()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - t0
        after = [cpu_s(n.pid) for n in self.nodes]
        if res.returncode != 0:
            print(f"ANOMALY: smsp-bench exited {res.returncode}: {res.stdout} {res.stderr}")
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["node_cpu"] = [(a - b) / wall for a, b in zip(after, before)]
        r["cmd"] = cmd
        return r

    def stop(self):
        # The front first: a node stopped under a running front is logged
        # 'down', which is no anomaly here.
        self.front.terminate()
        rcs = [self.front.wait()]
        for p in self.nodes:
            p.terminate()
        rcs += [p.wait() for p in self.nodes]
        log = open(self.err).read()
        for i in range(len(self.nodes)):
            log += open(os.path.join(self.dir, f"n{i}.err")).read()
        # A node logs "front ... gone (...unreachable)" when the front stops:
        # expected at the end of every run.
        odd = [l for l in log.splitlines()
               if any(w in l for w in (" down", "unreachable", "error", "ERROR", "abort"))
               and not ("node: front" in l and " gone (" in l)]
        if odd or any(rc not in (0, -15) for rc in rcs):
            print(f"ANOMALY: exit codes {rcs}; log lines: {odd[:5]}")
        shutil.rmtree(self.dir)


node_counts = [int(n) for n in args.nodes.split(",")]
loads = [("mailbox", 50, int(k)) for k in args.pipelines.split(",")]
if not args.no_latency:
    loads.append(("count", 1, 1))
results = {}  # (workload, c, k, nodes) -> [result]
shown_cmds = {}
for rnd in range(1, args.rounds + 1):
    for w, c, k in loads:
        for n in (node_counts if w == "mailbox" else [x for x in node_counts if x <= 1]):
            cl = Cluster(n)
            r = cl.run("-w", w, "-c", str(c), "-k", str(k), "-d", str(args.seconds),
                       "--warmup", "1")
            shown_cmds.setdefault((w, c, k, n), cl.cmds + [r["cmd"]])
            cl.stop()
            results.setdefault((w, c, k, n), []).append(r)
            lat = r["latency_us"]
            print(f"round {rnd}: {w:7} c={c:<2} K={k:<2} nodes={n}: "
                  f"{r['requests_per_s']:9.0f} req/s  p50 {lat['p50']:7.0f} us  "
                  f"p99 {lat['p99']:7.0f} us  max {lat['max']:7.0f} us  "
                  f"front CPU {r['server_cpu_share']:.2f}  node CPU "
                  + " ".join(f"{x:.2f}" for x in r["node_cpu"])
                  + f"  errors {r['error_count']} dropped {r['dropped']}", flush=True)

med = statistics.median
print(f"\n--sync={args.sync} on front and nodes, {args.rounds} rounds, "
      f"{args.seconds:g} s each, medians")
print("| workload | c | K | nodes | req/s (rounds) | median req/s | cycles/s | "
      "p50 µs | p99 µs | front CPU | node CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (w, c, k, n), rs in results.items():
    rps = [r["requests_per_s"] for r in rs]
    cyc = f"{med(rps) / 4:.0f}" if w == "mailbox" else "-"
    ncpu = " + ".join(f"{med(r['node_cpu'][i] for r in rs):.2f}" for i in range(n)) or "-"
    print(f"| {w} | {c} | {k} | {n} | " + " ".join(f"{x / 1000:.1f}k" for x in rps)
          + f" | {med(rps) / 1000:.1f}k | {cyc} | "
          f"{med(r['latency_us']['p50'] for r in rs):.0f} | "
          f"{med(r['latency_us']['p99'] for r in rs):.0f} | "
          f"{med(r['server_cpu_share'] for r in rs):.2f} | {ncpu} |")
print("\ncommand lines (first round; ports and temporary dirs vary):")
for key, cmds in shown_cmds.items():
    print(f"{key}:")
    for cmd in cmds:
        print("  " + " ".join(cmd))
