#!/usr/bin/env python3
"""Mailbox nodes: how long a front takes to notice a dead or frozen node.

Usage: node_failover.py [SERVER_BIN] [TRIALS] [NODE_TIMEOUT_S] [OUTAGE_S]

Starts a front with two mailbox nodes (--node-timeout NODE_TIMEOUT_S, by
default the default 1 s, on front and nodes; --dump-interval 0), registers
users until one is placed on node 0 and one on node 1 (from DUMP's
"user(s) placed" counts), and polls COUNT for both, each on its own
connection, one request at a time, as fast as the replies come. Then, TRIALS
times each, alternating:

  kill:   kill -9 node 0; after OUTAGE_S (2) s start it again (same port, same data dir)
  freeze: SIGSTOP node 0; after OUTAGE_S s SIGCONT it

and reports, for node 0's user: the time from the signal to the first
`KO mailbox unavailable` reply, the longest single request (send to reply)
between the signal and the recovery, and the time from the restart (exec)
or SIGCONT to the first COUNT served again; for node 1's user, its longest
request meanwhile (it should not notice). Any other reply is an anomaly.
With TRACE=1 in the environment it also prints, for each trial, node 0's
user's requests in order (runs of quick alike replies folded).
"""
import os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

from bench_support import free_port

server = sys.argv[1] if len(sys.argv) > 1 else "build/bin/smsp-actors"
trials = int(sys.argv[2]) if len(sys.argv) > 2 else 5
timeout = sys.argv[3] if len(sys.argv) > 3 else "1"
outage = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
data = tempfile.mkdtemp(prefix="smsp-failover-")
front_log = os.path.join(data, "front.err")
commands = []


node_ports = [free_port(), free_port()]


def start_node(i):
    cmd = [server, "node", "--port", str(node_ports[i]), "--node-timeout", timeout,
           "--data-dir", os.path.join(data, f"n{i}")]
    if len(commands) < 2:
        commands.append(cmd)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            stderr=open(os.path.join(data, f"n{i}.err"), "a"))
    line = proc.stdout.readline()
    assert "listening" in line, line
    return proc, t0


nodes = [start_node(0)[0], start_node(1)[0]]
cmd = [server, "--port", "0", "--pwhash", "min", "--node-timeout", timeout,
       "--dump-interval", "0", "--data-dir", os.path.join(data, "front"),
       "--mailbox-node", f"127.0.0.1:{node_ports[0]}",
       "--mailbox-node", f"127.0.0.1:{node_ports[1]}"]
commands.append(cmd)
front = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stderr=open(front_log, "w"))
port = int(front.stdout.readline().strip().rsplit(":", 1)[1])
while open(front_log).read().count(" up: ") < 2:
    time.sleep(0.05)


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s, s.makefile("r", newline="\n")


def call(s, r, line):
    s.sendall((line + "\n").encode())
    return r.readline().rstrip("\n")


def placed():
    """Users placed per node, from a DUMP's log lines."""
    mark = os.path.getsize(front_log)
    s, r = connect()
    assert call(s, r, "DUMP") == "OK"
    s.close()
    while True:
        with open(front_log) as f:
            f.seek(mark)
            text = f.read()
        if "DUMP done" in text:
            return [int(re.search(rf"DUMP node 127.0.0.1:{p}: \w+, (\d+) user", text).group(1))
                    for p in node_ports]
        time.sleep(0.02)


# Find one user on each node.
s, r = connect()
users = [None, None]
before = placed()
i = 0
while None in users:
    name = f"f{i}"
    cookie = call(s, r, f"REGISTER {name} pw")[3:]
    after = placed()
    node = 0 if after[0] > before[0] else 1
    if users[node] is None:
        users[node] = (name, cookie)
    before = after
    i += 1
s.close()
print(f"user {users[0][0]} on node 0 (127.0.0.1:{node_ports[0]}), "
      f"{users[1][0]} on node 1 (127.0.0.1:{node_ports[1]}); {i} registered")


class Poller(threading.Thread):
    """COUNT in a loop; keeps (sent, answered, reply) of every request."""

    def __init__(self, user):
        super().__init__(daemon=True)
        self.user = user
        self.log = []
        self.stop = False

    def run(self):
        s, r = connect()
        req = f"COUNT {self.user[0]} {self.user[1]}\n".encode()
        while not self.stop:
            t0 = time.monotonic()
            s.sendall(req)
            reply = r.readline().rstrip("\n")
            self.log.append((t0, time.monotonic(), reply))
        s.close()


pollers = [Poller(users[0]), Poller(users[1])]
for p in pollers:
    p.start()
time.sleep(1)
anomalies = []
rows = {"kill": [], "freeze": []}
for trial in range(trials * 2):
    kind = "kill" if trial % 2 == 0 else "freeze"
    mark = [len(p.log) for p in pollers]
    t_sig = time.monotonic()
    if kind == "kill":
        nodes[0].kill()
        nodes[0].wait()
    else:
        nodes[0].send_signal(signal.SIGSTOP)
    time.sleep(outage)
    if kind == "kill":
        nodes[0], t_back = start_node(0)
    else:
        t_back = time.monotonic()
        nodes[0].send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 30
    while True:
        served = [e for e in pollers[0].log[mark[0]:] if e[0] >= t_back and e[2].startswith("COUNTED")]
        if served or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    time.sleep(1)  # let it settle before the next trial
    mine = pollers[0].log[mark[0]:]
    other = pollers[1].log[mark[1]:]
    first_ko = next((e[1] for e in mine if e[2] == "KO mailbox unavailable"), None)
    back = served[0][1] - t_back if served else None
    during = [e for e in mine if e[1] >= t_sig and (not served or e[0] <= served[0][0])]
    row = {
        "notice": None if first_ko is None else first_ko - t_sig,
        "longest": max(e[1] - e[0] for e in during),
        "back": back,
        "ko": sum(e[2] == "KO mailbox unavailable" for e in mine),
        "other_longest": max(e[1] - e[0] for e in other),
        "other_n": len(other),
    }
    rows[kind].append(row)
    if os.environ.get("TRACE"):
        # Node 0's user's requests around the event, runs of alike replies
        # folded: (sent, answered) in ms from the signal.
        runs = []
        for e in mine:
            kind_r = e[2].split()[0]
            if runs and runs[-1][0] == kind_r and e[1] - e[0] < 0.1 and runs[-1][4] < 0.1:
                runs[-1][2], runs[-1][3] = e[1], runs[-1][3] + 1
            else:
                runs.append([kind_r, e[0], e[1], 1, e[1] - e[0]])
        for k, a, b, n, first in runs:
            print(f"    {n:6} x {k:8} sent {(a - t_sig) * 1000:8.1f} ms .. answered "
                  f"{(b - t_sig) * 1000:8.1f} ms")
        print(f"    (restart/SIGCONT at {(t_back - t_sig) * 1000:.1f} ms)")
    for who, entries in (("node 0 user", mine), ("node 1 user", other)):
        for e in entries:
            ok = e[2].startswith("COUNTED") or (who == "node 0 user" and e[2] == "KO mailbox unavailable")
            if not ok:
                anomalies.append(f"{kind} trial {trial // 2 + 1}, {who}: {e[2]!r}")
    fmt = lambda x: "none" if x is None else f"{x * 1000:.0f} ms"
    print(f"{kind:6} {trial // 2 + 1}: first KO after {fmt(row['notice'])}, longest request "
          f"{fmt(row['longest'])}, served again {fmt(row['back'])} after "
          f"{'restart' if kind == 'kill' else 'SIGCONT'}; {row['ko']} KO; node 1 user: "
          f"{row['other_n']} requests, longest {fmt(row['other_longest'])}", flush=True)

for p in pollers:
    p.stop = True
for p in pollers:
    p.join(timeout=5)
front.terminate()
rc = [front.wait()]
for n in nodes:
    n.terminate()
    rc.append(n.wait())
log = open(front_log).read()
events = [l for l in log.splitlines() if re.search(r"node \S+ (up|down|unreachable)", l)]
print("\nfront's node events:")
for l in events:
    print("  " + l)
print(f"\nexit codes (front, node 0, node 1): {rc}")
bad = [l for l in log.splitlines() if "error" in l.lower() or "abort" in l.lower()]
for n in (0, 1):
    bad += [l for l in open(os.path.join(data, f"n{n}.err")) if "error" in l.lower() or "abort" in l.lower()]
anomalies += [f"log: {l.strip()}" for l in bad]

med = statistics.median


def stat(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "never | never"
    return f"{med(xs) * 1000:.0f} | {max(xs) * 1000:.0f}"


print(f"\n--node-timeout {timeout} s, outage {outage:g} s, {trials} trials each; ms, median | max")
print("| event | to first KO (med / max) | longest request (med / max) | "
      "served again after (med / max) | node 1 user's longest request (med / max) |")
print("|---|---|---|---|---|")
for kind, what in (("kill", "kill -9, restart"), ("freeze", "SIGSTOP, SIGCONT")):
    rs = rows[kind]
    print(f"| {what} | {stat(r['notice'] for r in rs).replace(' | ', ' / ')} | "
          f"{stat(r['longest'] for r in rs).replace(' | ', ' / ')} | "
          f"{stat(r['back'] for r in rs).replace(' | ', ' / ')} | "
          f"{stat(r['other_longest'] for r in rs).replace(' | ', ' / ')} |")
print("\ncommands:")
for c in commands:
    print("  " + " ".join(c))
if anomalies:
    print(f"\nANOMALIES ({len(anomalies)}):")
    for a in anomalies[:30]:
        print("  " + a)
shutil.rmtree(data)
