#!/usr/bin/env python3
# DUMP amplification: N users x M messages, then 100 DUMPs pipelined over 10
# connections; prints how long they took and how many bytes of log they
# wrote. Usage: dump_amplification.py SERVER_BIN USERS MESSAGES [server options]
import os, socket, subprocess, sys, time, tempfile, threading
binary = sys.argv[1]; users = int(sys.argv[2]); per = int(sys.argv[3]); extra = sys.argv[4:]
d = tempfile.mkdtemp()
err = open(d + "/err", "wb")
p = subprocess.Popen([binary, "--port", "0", "--pwhash", "min", "--data-dir", d + "/data", "--sync", "off"] + extra,
                     stdout=subprocess.PIPE, stderr=err, text=True)
line = p.stdout.readline()
port = int(line.strip().rsplit(":", 1)[1])
def conn():
    return socket.create_connection(("127.0.0.1", port))
def pipeline(s, lines):
    s.sendall("".join(l + "\n" for l in lines).encode()); buf = b""
    while buf.count(b"\n") < len(lines): buf += s.recv(1 << 20)
    return buf.decode().splitlines()
s = conn()
cookies = [r.split()[1] for r in pipeline(s, [f"REGISTER u{i} pw" for i in range(users)])]
for i, c in enumerate(cookies):
    reqs = []
    for k in range(per): reqs += [f"MESSAGE message {k} for u{i} {c}", f"STORE u{i} {c}"]
    assert all(r == "OK" for r in pipeline(s, reqs))
time.sleep(0.5)
before = os.path.getsize(d + "/err")
t0 = time.time()
def dumper():
    c = conn(); r = pipeline(c, ["DUMP"] * 10); assert r == ["OK"] * 10
ts = [threading.Thread(target=dumper) for _ in range(10)]
for t in ts: t.start()
for t in ts: t.join()
took = time.time() - t0
time.sleep(0.5)
after = os.path.getsize(d + "/err")
print(f"{users} users x {per} messages: 100 DUMPs over 10 connections answered in {took:.1f} s, log grew {after-before} bytes")
p.terminate(); p.wait()
lines = open(d + "/err").read().splitlines()
print([l for l in lines if "DUMP done" in l][:5])
