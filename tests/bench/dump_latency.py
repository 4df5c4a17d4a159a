#!/usr/bin/env python3
"""DUMP on a large server: does it hold up other clients?

Usage: dump_latency.py SERVER_BIN

Writes a data dir of 100,000 accounts with 10 messages each (as
passivation_rss.py does), starts the server on it, keeps one connection
sending COUNT in a loop, sends DUMP on another, and reports how long DUMP
took and the COUNT latencies meanwhile.
"""
import os, shutil, socket, sqlite3, subprocess, sys, tempfile, threading, time

server_bin = sys.argv[1]; users = 100000; per_user = 10
data = tempfile.mkdtemp(prefix="smsp-dump-")
def start(*extra):
    proc = subprocess.Popen([server_bin, "--port", "0", "--pwhash", "min", "--data-dir", os.path.join(data, "d"), *extra],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(data,"log"),"a"), text=True)
    return proc, int(proc.stdout.readline().strip().rsplit(":",1)[1])
def conn(port):
    s = socket.create_connection(("127.0.0.1", port)); return s, s.makefile("r")
proc, port = start("--sync", "off")
s, r = conn(port); s.sendall(b"REGISTER seed pw\n"); r.readline(); s.close()
proc.terminate(); proc.wait()
db = sqlite3.connect(os.path.join(data, "d", "smsp.db"))
(h,) = db.execute("SELECT hash FROM accounts WHERE name='seed'").fetchone()
db.executemany("INSERT INTO accounts VALUES (?, ?)", ((f"u{i}", h) for i in range(users)))
db.executemany("INSERT INTO mail (owner, text) VALUES (?, ?)", ((f"u{i}", f"message {j} for u{i}".encode()) for i in range(users) for j in range(per_user)))
db.commit(); db.close()
proc, port = start()
s, r = conn(port); s.sendall(b"LOGIN u0 pw\n"); cookie = r.readline().split()[1]
lat = []; stop = False
def counter():
    while not stop:
        t = time.monotonic(); s.sendall(f"COUNT u0 {cookie}\n".encode()); r.readline(); lat.append(time.monotonic() - t)
th = threading.Thread(target=counter); th.start()
time.sleep(1); before = len(lat)
d, dr = conn(port); t0 = time.monotonic(); d.sendall(b"DUMP\n"); dr.readline(); dump_s = time.monotonic() - t0
during = lat[before:]
stop = True; th.join()
print(f"DUMP of {users} accounts x {per_user} messages: {dump_s*1000:.0f} ms; {len(during)} COUNTs answered meanwhile on another connection, worst {max(during)*1000:.1f} ms, median {sorted(during)[len(during)//2]*1000:.2f} ms")
lines = sum(1 for l in open(os.path.join(data,"log")) if "DUMP mailbox" in l)
print(f"log lines 'DUMP mailbox': {lines}")
proc.terminate(); proc.wait(); shutil.rmtree(data)
