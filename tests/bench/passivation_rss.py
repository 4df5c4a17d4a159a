#!/usr/bin/env python3
"""Memory with many users: RSS before and after their mailboxes passivate.

Usage: passivation_rss.py SERVER_BIN [USERS] [MESSAGES_PER_USER] [IDLE_S] [--login-only]

Builds a data dir with USERS accounts of MESSAGES_PER_USER messages each
(written with Python's sqlite3 straight into the server's schema, after the
server itself created the file and one account whose hash every account
shares), then starts the server on it and reports: the time from start to
its "listening" line, its RSS at start, after every user logged in and
counted its mailbox (all mailboxes active), and after --mailbox-idle
passivated them, with the registry's DUMP counts at each point. With
--login-only the users log in but touch no mailbox: what the sessions alone
cost.
"""
import os, re, shutil, socket, sqlite3, subprocess, sys, tempfile, time

server_bin = sys.argv[1]
users = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
per_user = int(sys.argv[3]) if len(sys.argv) > 3 else 10
idle = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
login_only = "--login-only" in sys.argv
data = tempfile.mkdtemp(prefix="smsp-rss-")
log_path = os.path.join(data, "server.log")


def start(*extra):
    log = open(log_path, "a")
    t0 = time.monotonic()
    proc = subprocess.Popen([server_bin, "--port", "0", "--pwhash", "min",
                             "--data-dir", os.path.join(data, "d"), *extra],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    elapsed = time.monotonic() - t0
    port = int(line.strip().rsplit(":", 1)[1])
    return proc, port, elapsed


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    return s, s.makefile("r", newline="\n")


def call_many(sock, reader, lines):
    sock.sendall("".join(l + "\n" for l in lines).encode())
    return [reader.readline().rstrip("\n") for _ in lines]


def dump_counts(port):
    s, r = connect(port)
    call_many(s, r, ["DUMP"])
    s.close()
    time.sleep(0.5)
    with open(log_path) as f:
        found = re.findall(r"\d+ active mailbox\(es\) \(\d+ activated, \d+ passivated\)", f.read())
    return found[-1] if found else "?"


# 1. The server creates the schema and one account; its hash serves all.
proc, port, _ = start("--sync", "off")
s, r = connect(port)
assert call_many(s, r, ["REGISTER seed pw"])[0].startswith("OK ")
s.close()
proc.terminate(); proc.wait()
db = sqlite3.connect(os.path.join(data, "d", "smsp.db"))
(seed_hash,) = db.execute("SELECT hash FROM accounts WHERE name='seed'").fetchone()
t0 = time.monotonic()
db.executemany("INSERT INTO accounts (name, hash) VALUES (?, ?)",
               ((f"u{i}", seed_hash) for i in range(users)))
db.executemany("INSERT INTO mail (owner, text) VALUES (?, ?)",
               ((f"u{i}", f"message {j} for u{i}".encode())
                for i in range(users) for j in range(per_user)))
db.commit(); db.close()
print(f"data dir: {users} users x {per_user} messages written in "
      f"{time.monotonic() - t0:.1f} s, "
      f"{os.path.getsize(os.path.join(data, 'd', 'smsp.db')) / 2**20:.0f} MiB")

# 2. Start on it, touch every mailbox, watch RSS.
proc, port, startup = start("--mailbox-idle", str(idle))
print(f"start to 'listening': {startup * 1000:.0f} ms; RSS at start "
      f"{rss_mib(proc.pid):.1f} MiB")
t0 = time.monotonic()
s, r = connect(port)
batch = 500
for first in range(0, users, batch):
    names = [f"u{i}" for i in range(first, min(users, first + batch))]
    cookies = [rep[3:] for rep in call_many(s, r, [f"LOGIN {n} pw" for n in names])]
    if login_only:
        continue
    counts = call_many(s, r, [f"COUNT {n} {c}" for n, c in zip(names, cookies)])
    bad = [c for c in counts if c != f"COUNTED {per_user}"]
    if bad:
        sys.exit(f"unexpected COUNT replies: {bad[:3]}")
s.close()
touched = time.monotonic() - t0
print(f"all {users} users logged in"
      + ("" if login_only else f" and counted {per_user} messages") + " in "
      f"{touched:.1f} s; RSS {rss_mib(proc.pid):.1f} MiB; {dump_counts(port)}")
deadline = time.monotonic() + idle * 3 + 10
while time.monotonic() < deadline:
    time.sleep(1)
    if dump_counts(port).startswith("0 active"):
        break
print(f"after --mailbox-idle {idle:g} s: RSS {rss_mib(proc.pid):.1f} MiB; "
      f"{dump_counts(port)}")
proc.terminate(); proc.wait()
proc, port, startup = start()
print(f"restart on the full data dir: start to 'listening' {startup * 1000:.0f} ms")
proc.terminate(); proc.wait()
shutil.rmtree(data)
