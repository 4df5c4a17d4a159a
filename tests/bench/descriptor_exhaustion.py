#!/usr/bin/env python3
# N clients (default 80) against a server under a 64-descriptor limit
# (prlimit): server CPU while the table is full, and every connection
# answered or told KO server busy. Usage: descriptor_exhaustion.py SERVER_BIN [N]
import os, socket, subprocess, sys, time, tempfile
binary = sys.argv[1]; nconn = int(sys.argv[2]) if len(sys.argv) > 2 else 80
d = tempfile.mkdtemp()
p = subprocess.Popen(["prlimit", "--nofile=64:64", binary, "--port", "0", "--pwhash", "min",
                      "--data-dir", d + "/data"], stdout=subprocess.PIPE, stderr=open(d + "/err", "w"), text=True)
line = p.stdout.readline(); port = int(line.strip().rsplit(":", 1)[1])
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().split()
    return (int(f[13]) + int(f[14])) / os.sysconf("SC_CLK_TCK")
socks = []
for i in range(nconn):
    s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
time.sleep(0.5)
c0 = cpu(); t0 = time.time(); time.sleep(3); c1 = cpu(); t1 = time.time()
print(f"server CPU while {nconn} connected: {(c1-c0)/(t1-t0)*100:.1f}% of a core")
for s in socks:
    try: s.sendall(b"COUNT a b\n")
    except OSError: pass
res = {}
for s in socks:
    s.settimeout(5)
    try: r = s.recv(100).decode().strip() or "<closed>"
    except socket.timeout: r = "<no reply in 5 s>"
    except OSError as e: r = "<" + str(e) + ">"
    res[r] = res.get(r, 0) + 1
print(res)
# service resumes once descriptors free up
for s in socks: s.close()
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"COUNT a b\n"); s.settimeout(5)
print("after closing all:", s.recv(100).decode().strip())
p.terminate(); p.wait()
print(open(d + "/err").read())
