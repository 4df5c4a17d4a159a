#!/usr/bin/env python3
"""Mailbox nodes: a node's memory with many users, active and passivated.

Usage: node_rss.py [SERVER_BIN] [USERS] [IDLE_S] [CONNECTIONS]

Starts a mailbox node and a front using it (--pwhash min, --sync normal on
both, --mailbox-idle IDLE_S, --dump summary, --dump-interval 0), registers
USERS users (REGISTERs pipelined in batches of 500 over CONNECTIONS
connections), then touches every user's mailbox once (COUNT with the
user's cookie, pipelined the same way), so that the node spawns one mailbox
actor per user, and waits until DUMP shows the node up with 0 active mailboxes (and the
front with 0 active).
Reports VmRSS (/proc/PID/status) of node and front at start, after the
registrations, right after the touches (all mailboxes active, if IDLE_S
exceeds the time the touches take), and after passivation, plus VmHWM
(the peak) and the DUMP counts at each point, and every 5 s while waiting
for the passivations. KEEP_LOGS=DIR keeps the logs of front and node there. The mailboxes are empty: this
is the cost of a mailbox actor and its bookkeeping, not of stored mail.
"""
import os, re, shutil, socket, subprocess, sys, tempfile, threading, time

server = sys.argv[1] if len(sys.argv) > 1 else "build/bin/smsp-actors"
users = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
idle = sys.argv[3] if len(sys.argv) > 3 else "30"
conns = int(sys.argv[4]) if len(sys.argv) > 4 else 4
batch = 500
data = tempfile.mkdtemp(prefix="smsp-noderss-")
front_log = os.path.join(data, "front.err")

s = socket.socket()
s.bind(("127.0.0.1", 0))
node_port = s.getsockname()[1]
s.close()
node_cmd = [server, "node", "--port", str(node_port), "--sync", "normal",
            "--data-dir", os.path.join(data, "n0")]
node = subprocess.Popen(node_cmd, stdout=subprocess.PIPE, text=True,
                        stderr=open(os.path.join(data, "n0.err"), "w"))
assert "listening" in node.stdout.readline()
front_cmd = [server, "--port", "0", "--pwhash", "min", "--sync", "normal",
             "--mailbox-idle", idle, "--dump", "summary", "--dump-interval", "0",
             "--data-dir", os.path.join(data, "front"),
             "--mailbox-node", f"127.0.0.1:{node_port}"]
front = subprocess.Popen(front_cmd, stdout=subprocess.PIPE, text=True,
                         stderr=open(front_log, "w"))
port = int(front.stdout.readline().strip().rsplit(":", 1)[1])
while " up: " not in open(front_log).read():
    time.sleep(0.05)


def status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return -1


def connect():
    s = socket.create_connection(("127.0.0.1", port))
    return s, s.makefile("r", newline="\n")


def call_many(s, r, lines):
    s.sendall("".join(l + "\n" for l in lines).encode())
    return [r.readline().rstrip("\n") for _ in lines]


def dump():
    """(front's active mailboxes, node's line) from a DUMP."""
    mark = os.path.getsize(front_log)
    s, r = connect()
    assert call_many(s, r, ["DUMP"]) == ["OK"]
    s.close()
    while True:
        with open(front_log) as f:
            f.seek(mark)
            text = f.read()
        if "DUMP done" in text:
            reg = re.search(r"DUMP registry: (.*)", text).group(1)
            nd = re.search(r"DUMP node \S+ (.*)", text).group(1)
            return reg, nd


def node_cpu():
    with open(f"/proc/{node.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settled():
    """The node is up with 0 active mailboxes and the front has 0 active."""
    reg, nd = dump()
    return (nd.startswith("up") and " 0 active mailbox" in nd
            and reg.split(", ")[1].startswith("0 active"))


rows = []


def snapshot(moment):
    reg, nd = dump()
    rows.append((moment, status(node.pid, "VmRSS"), status(front.pid, "VmRSS"),
                 re.search(r"\d+ user\(s\) placed, \d+ active mailbox\(es\)", nd).group(0)))
    print(f"{moment}: node {rows[-1][1]:.1f} MiB, front {rows[-1][2]:.1f} MiB; "
          f"node: {rows[-1][3]}; front: {reg}", flush=True)


def parallel(work):
    """Runs work(connection index, socket, reader) on `conns` connections."""
    errors = []

    def one(i):
        s, r = connect()
        try:
            work(i, s, r)
        except Exception as e:  # reported below
            errors.append(repr(e))
        s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print("ANOMALY:", errors[:5])


snapshot("at start")
cookies = [None] * users
peak = {"node": 0.0, "front": 0.0}
sampling = True


def sample():
    while sampling:
        peak["node"] = max(peak["node"], status(node.pid, "VmRSS"))
        peak["front"] = max(peak["front"], status(front.pid, "VmRSS"))
        time.sleep(0.2)


threading.Thread(target=sample, daemon=True).start()


def register(i, s, r):
    for first in range(i * batch, users, conns * batch):
        idx = range(first, min(users, first + batch))
        replies = call_many(s, r, [f"REGISTER r{n} pw" for n in idx])
        for n, rep in zip(idx, replies):
            if not rep.startswith("OK "):
                raise RuntimeError(f"REGISTER r{n}: {rep}")
            cookies[n] = rep[3:]


t0 = time.monotonic()
parallel(register)
t_reg = time.monotonic() - t0
print(f"{users} REGISTERs in {t_reg:.1f} s ({users / t_reg:.0f}/s)")
snapshot("after the registrations")


def touch(i, s, r):
    for first in range(i * batch, users, conns * batch):
        idx = range(first, min(users, first + batch))
        replies = call_many(s, r, [f"COUNT r{n} {cookies[n]}" for n in idx])
        bad = [rep for rep in replies if rep != "COUNTED 0"]
        if bad:
            raise RuntimeError(f"COUNT: {bad[:3]}")


t0 = time.monotonic()
parallel(touch)
t_touch = time.monotonic() - t0
print(f"{users} COUNTs in {t_touch:.1f} s ({users / t_touch:.0f}/s)")
snapshot("all touched")
t0 = time.monotonic()
last_print = -10.0
cpu0 = node_cpu()
while not settled() and time.monotonic() - t0 < float(idle) * 3 + 60:
    if time.monotonic() - last_print >= 5:
        reg, nd = dump()
        cpu1 = node_cpu()
        print(f"  +{time.monotonic() - t0:5.1f} s: node RSS {status(node.pid, 'VmRSS'):.1f} MiB, "
              f"node CPU {(cpu1 - cpu0) / (time.monotonic() - last_print if last_print >= 0 else 5):.2f}; "
              f"node: {nd[:60]}; front: {reg.split(', ')[1]}", flush=True)
        cpu0, last_print = cpu1, time.monotonic()
    time.sleep(1)
t_pass = time.monotonic() - t0
sampling = False
print(f"node up with 0 active, front 0 active, {t_pass:.1f} s after the touches ended")
time.sleep(2)
snapshot("after passivation (+2 s)")
hwm_node, hwm_front = status(node.pid, "VmHWM"), status(front.pid, "VmHWM")
front.terminate()
rc = [front.wait()]  # the front first: a node stopped under it is logged 'down'
node.terminate()
rc = (rc[0], node.wait())
bad = [l.strip() for f in ("front.err", "n0.err") for l in open(os.path.join(data, f))
       if re.search(r"error|abort|down|unreachable", l, re.I) and "DUMP" not in l]

print(f"\n{users} users, --mailbox-idle {idle} s, REGISTER {t_reg:.0f} s, COUNT {t_touch:.0f} s")
print("| moment | node RSS MiB | front RSS MiB | node (DUMP) |")
print("|---|---|---|---|")
for moment, n, f, d in rows:
    print(f"| {moment} | {n:.1f} | {f:.1f} | {d} |")
print(f"| peak (sampled every 0.2 s; VmHWM) | {peak['node']:.1f} ({hwm_node:.1f}) | "
      f"{peak['front']:.1f} ({hwm_front:.1f}) | |")
base_n, base_f = rows[1][1], rows[1][2]
print(f"per user, node: active {(rows[2][1] - base_n) * 2**20 / users:.0f} B above "
      f"'after the registrations', {(rows[-1][1] - rows[0][1]) * 2**20 / users:.0f} B "
      f"left after passivation above start; front: {(rows[-1][2] - rows[0][2]) * 2**20 / users:.0f} B "
      f"per user after passivation above start")
print(f"exit codes (front, node): {rc}")
events = [l.strip() for l in open(front_log)
          if re.search(r"node \S+ (up|down|unreachable)|remote spawn", l) and "DUMP" not in l]
print("front's node events:", *events[:20], sep="\n  ")
if bad:
    print("ANOMALY log lines:", *bad[:10], sep="\n  ")
print("\ncommands:\n  " + " ".join(node_cmd) + "\n  " + " ".join(front_cmd))
if os.environ.get("KEEP_LOGS"):
    for f in ("front.err", "n0.err"):
        shutil.copy(os.path.join(data, f), os.path.join(os.environ["KEEP_LOGS"], f))
shutil.rmtree(data)
