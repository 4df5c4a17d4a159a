#!/usr/bin/env python3
# N connections each send 2000 GETMSG of a 16,000-byte message and never read:
# server RSS growth (peak), and how many the no-progress rule closes.
# Usage: nonreading_clients.py SERVER_BIN N [server options]
import socket, subprocess, sys, time, tempfile, resource
binary = sys.argv[1]; n = int(sys.argv[2]); extra = sys.argv[3:]
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "--port", "0", "--pwhash", "min", "--data-dir", d + "/data",
                      "--idle-timeout", "2"] + extra, stdout=subprocess.PIPE, stderr=open(d + "/err", "w"), text=True)
line = p.stdout.readline()
while "listening" not in line: line = p.stdout.readline()
port = int(line.strip().rsplit(":", 1)[1])
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS:"): return int(l.split()[1]) / 1024
def call(s, line):
    s.sendall(line.encode() + b"\n"); buf = b""
    while not buf.endswith(b"\n"): buf += s.recv(65536)
    return buf.decode().strip()
a = socket.create_connection(("127.0.0.1", port))
cookie = call(a, "REGISTER alice pw").split()[1]
assert call(a, "MESSAGE " + "x" * 16000 + " " + cookie) == "OK"
assert call(a, "STORE alice " + cookie) == "OK"
time.sleep(0.3); before = rss()
batch = ("GETMSG alice " + cookie + "\n").encode() * 2000
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    try: s.sendall(batch)
    except BlockingIOError: pass
    socks.append(s)
peak = before
t0 = time.time()
other = None
while time.time() - t0 < 8:
    peak = max(peak, rss()); time.sleep(0.05)
    if other is None and time.time() - t0 > 1: other = call(a, "COUNT alice " + cookie)
print(f"{n} non-reading clients: RSS {before:.1f} -> peak {peak:.1f} MiB (+{peak-before:.1f}, {(peak-before)*1024/n:.0f} KiB each); other client meanwhile: {other}; RSS at the end {rss():.1f}")
p.terminate(); p.wait()
err = open(d + "/err").read().splitlines()
print(len(err), "log lines;", sum("unread" in l for l in err), "unread closes;", [l for l in err if "max-unsent-total" in l][:2])
