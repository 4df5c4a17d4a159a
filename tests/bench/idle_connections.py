#!/usr/bin/env python3
"""Idle connections and the idle server: RSS per held connection, a probe's latency, idle CPU and wake-ups (smsp-actors and Redis).

Usage: idle_connections.py [--bin DIR] [--counts 10000,50000] [--no-redis]
                           [--idle-seconds 10] [--probes 5] [--json FILE]

For each server (smsp-actors from --bin, with --pwhash min, and Debian's
redis-server with --save '' --appendonly no, unless --no-redis) and each
count N of --counts, a fresh server on a loopback port, in a temporary dir:

  1. 2 s after start, its RSS (VmRSS) and, over --idle-seconds, its CPU
     (% of one core, from its threads' schedstat: utime+stime counts
     10 ms ticks, too coarse for 0.1 %; the JSON has both) and wake-ups
     (voluntary + involuntary context switches of all its threads, per
     second) with no connection;
  2. N TCP connections opened and held by client processes of this script
     (non-blocking connects in batches, several processes when one
     process's descriptor limit cannot hold N, each from its own loopback
     source address so that the ephemeral ports suffice); the server has
     accepted them all when its descriptor count has grown by N;
  3. its RSS again (growth in total and per connection), its CPU and
     wake-ups over --idle-seconds with the N connections idle;
  4. --probes fresh connections, each REGISTER + LOGIN + COUNT (Redis:
     PING), timed (the COUNT alone, and the whole probe from connect);
     the table gives the median;
  5. every held connection still open (none readable: no EOF, no KO), and a
     sample of them answered (COUNT with a bad cookie -> KO; Redis: PING).

The soft descriptor limit is raised to the hard limit (and the hard limit
to what N needs when the process may raise it) for this script and the
servers it starts; a count the limit cannot hold is skipped, saying so.
smsp-actors runs with --max-connections and --idle-timeout high enough for
the measurement. A benchmark, not a test: it fails only when a server does
not start or a held connection is lost. Stops everything it started, also
on Ctrl-C.
"""
import argparse
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_support import free_port, wait_port

NAME = "idle_connections.py"
HEADROOM = 128          # descriptors a server or a client process needs besides the connections
BATCH = 500             # connects in flight at once per client process
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


# ---------------------------------------------------------------- client process

def hold(host, port, count, source, kind, warm):
    """A client process: opens COUNT connections (with WARM, each sends one
    request and reads its reply), then answers commands on stdin."""
    socks = []
    sel = selectors.DefaultSelector()
    failed = 0
    pending = 0
    opened = 0
    while opened < count or pending:
        while opened < count and pending < BATCH:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
            s.setblocking(False)
            err = s.connect_ex((host, port))
            opened += 1
            if err not in (0, 115):            # EINPROGRESS
                failed += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE)
            pending += 1
        for key, _ in sel.select(timeout=30):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed += 1
                s.close()
            else:
                socks.append(s)
    request = b"COUNT nobody 00\n" if kind == "smsp" else b"PING\r\n"
    if warm:
        for i in range(0, len(socks), BATCH):
            batch = socks[i:i + BATCH]
            for s in batch:
                s.send(request)                 # a few bytes: never blocks
                sel.register(s, selectors.EVENT_READ)
            while sel.get_map():
                events = sel.select(timeout=30)
                if not events:
                    sys.exit(f"{NAME}: no reply to a warm-up request in 30 s")
                for key, _ in events:
                    key.fileobj.recv(200)
                    sel.unregister(key.fileobj)
    print(f"ready {len(socks)} {failed}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "alive":
            # an idle connection the server closed (or wrote to) is readable
            for s in socks:
                sel.register(s, selectors.EVENT_READ)
            readable = len(sel.select(timeout=0))
            for s in socks:
                sel.unregister(s)
            print(f"alive {len(socks) - readable} {readable}", flush=True)
        elif cmd[0] == "check":
            step = max(1, len(socks) // int(cmd[1]))
            sample = socks[::step][:int(cmd[1])]
            replies = {}
            for s in sample:
                try:
                    s.sendall(request)
                except OSError:
                    replies["<send failed>"] = replies.get("<send failed>", 0) + 1
            for s in sample:
                s.setblocking(True)
                s.settimeout(10)
                try:
                    r = s.recv(200).decode(errors="replace").split()
                    r = r[0] if r else "<closed>"
                except OSError as e:
                    r = f"<{e.__class__.__name__}>"
                replies[r] = replies.get(r, 0) + 1
            print("checked " + json.dumps(replies), flush=True)
    for s in socks:
        s.close()


# ---------------------------------------------------------------- measuring

def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            nr_open = int(open("/proc/sys/fs/nr_open").read())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, nr_open),) * 2)
        except (OSError, ValueError):
            pass                                # not allowed: keep the hard limit
    soft0 = soft
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"descriptor limit (RLIMIT_NOFILE): soft {soft0} -> {soft}, "
          f"hard {hard} (servers and client processes inherit it)", flush=True)
    return soft


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime, stime


def cpu_ns(pid):
    """CPU time of PID's threads in ns (schedstat: finer than the 10 ms
    ticks of utime+stime, which cannot resolve 0.1 % of a core in 10 s)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass                                # a thread that just ended
    return total


def ctx_switches(pid, by_thread=None):
    """Context switches of PID's threads; with BY_THREAD (a dict), also
    summed by thread name there."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            n = 0
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line.split(None, 1)[1].strip()
                    elif line.startswith(("voluntary_ctxt_switches",
                                          "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
            total += n
            if by_thread is not None:
                by_thread[name] = by_thread.get(name, 0) + n
        except OSError:
            pass                                # a thread that just ended
    return total


def idle_load(pid, seconds):
    """(% of a core, wake-ups per second, % of a core from utime+stime,
    wake-ups per second by thread name) of PID over SECONDS."""
    b0, b1 = {}, {}
    c0, n0, w0, t0 = cpu_ticks(pid), cpu_ns(pid), ctx_switches(pid, b0), time.monotonic()
    time.sleep(seconds)
    c1, n1, w1, t1 = cpu_ticks(pid), cpu_ns(pid), ctx_switches(pid, b1), time.monotonic()
    ticks_pct = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0) * 100
    pct = (n1 - n0) / 1e9 / (t1 - t0) * 100 if n1 else ticks_pct
    by_thread = {k: round((v - b0.get(k, 0)) / (t1 - t0), 1)
                 for k, v in b1.items() if v > b0.get(k, 0)}
    return pct, (w1 - w0) / (t1 - t0), ticks_pct, by_thread


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


started = []        # server and client processes, each the leader of its own group


def spawn(argv, **kw):
    proc = subprocess.Popen(argv, start_new_session=True, **kw)
    started.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc in started:
        started.remove(proc)


def stop_all():
    for proc in list(started):
        stop(proc)


def start_server(kind, n, tmp, tag):
    log = open(os.path.join(tmp, tag + ".log"), "wb")
    if kind == "smsp":
        proc = spawn([server_bin, "--port", "0", "--pwhash", "min",
                      "--data-dir", os.path.join(tmp, tag),
                      "--max-connections", str(n + HEADROOM),
                      "--idle-timeout", "86400", "--admin-port", "off",
                      "--log-level", "warn"],
                     stdout=subprocess.PIPE, stderr=log, text=True)
        line = proc.stdout.readline()
        if not line:
            sys.exit(f"{NAME}: smsp-actors did not start: see {log.name}")
        port = int(line.strip().rsplit(":", 1)[1])
        # keep draining its stdout so that it never blocks on a full pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
    else:
        port = free_port()
        rdir = os.path.join(tmp, tag)
        os.makedirs(rdir)
        proc = spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                      "--save", "", "--appendonly", "no", "--dir", rdir,
                      # the client processes connect from 127.0.0.x: protected
                      # mode would refuse all but 127.0.0.1 (it binds loopback)
                      "--protected-mode", "no",
                      "--maxclients", str(n + HEADROOM)],
                     stdout=log, stderr=subprocess.STDOUT)
        if not wait_port(port, proc):
            sys.exit(f"{NAME}: redis-server did not start: see {log.name}")
    return proc, port


def exchange(sock, reader, line):
    sock.sendall(line.encode())
    return reader.readline().strip()


def probe(kind, port, i):
    """(ms of the COUNT or PING, ms of the whole probe from connect)."""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = s.makefile("r", newline="\n")
    try:
        if kind == "smsp":
            user = f"idleprobe{i}"
            reply = exchange(s, r, f"REGISTER {user} probe-pw\n")
            reply = exchange(s, r, f"LOGIN {user} probe-pw\n")
            if not reply.startswith("OK "):
                sys.exit(f"{NAME}: probe LOGIN answered {reply!r}")
            t1 = time.perf_counter()
            reply = exchange(s, r, f"COUNT {user} {reply.split()[1]}\n")
            want = "COUNTED"
        else:
            t1 = time.perf_counter()
            reply = exchange(s, r, "PING\r\n")
            want = "+PONG"
        t2 = time.perf_counter()
        if not reply.startswith(want):
            sys.exit(f"{NAME}: probe answered {reply!r}, not {want}")
        return (t2 - t1) * 1000, (t2 - t0) * 1000
    finally:
        s.close()


def open_held(kind, port, n, per_process, warm):
    """Client processes holding N connections in all."""
    holders = []
    left, i = n, 0
    while left > 0:
        k = min(left, per_process)
        # each from its own source address: a destination gives ~28k ports
        holders.append(spawn([sys.executable, os.path.abspath(__file__),
                              "--_hold", "127.0.0.1", str(port), str(k),
                              f"127.0.0.{1 + i}", kind, str(int(warm))],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True))
        left -= k
        i += 1
    held = failed = 0
    for h in holders:
        line = h.stdout.readline().split()
        if not line or line[0] != "ready":
            sys.exit(f"{NAME}: a client process failed")
        held += int(line[1])
        failed += int(line[2])
    return holders, held, failed


def ask(holders, cmd):
    for h in holders:
        h.stdin.write(cmd + "\n")
        h.stdin.flush()
    return [h.stdout.readline().split(None, 1) for h in holders]


def measure(kind, n, tmp, limit, warm):
    tag = f"{kind}-{n}" + ("-warm" if warm else "")
    proc, port = start_server(kind, n, tmp, tag)
    pid = proc.pid
    time.sleep(2)
    row = {"server": "smsp-actors" if kind == "smsp" else "redis",
           "connections": n, "warm": warm}
    row["rss_before_mib"] = rss_kib(pid) / 1024
    cpu0, wake0, ticks0, threads0 = idle_load(pid, args.idle_seconds)
    row["idle_cpu_pct_no_conn"], row["wakeups_per_s_no_conn"] = cpu0, wake0
    row["idle_cpu_pct_no_conn_ticks"] = ticks0
    row["wakeups_by_thread_no_conn"] = threads0
    print(f"  {tag}: started, RSS {row['rss_before_mib']:.1f} MiB; with no "
          f"connection {cpu0:.3f} % of a core, {wake0:.0f} wake-ups/s {threads0}",
          flush=True)
    if n == 0:
        stop(proc)
        return row
    fds0 = fd_count(pid)
    t0 = time.monotonic()
    holders, held, failed = open_held(kind, port, n, limit - HEADROOM, warm)
    deadline = time.monotonic() + 120
    while (fd_count(pid) < fds0 + held and time.monotonic() < deadline
           and proc.poll() is None):
        time.sleep(0.2)
    accepted = fd_count(pid) - fds0
    row["open_s"] = time.monotonic() - t0
    print(f"  {tag}: {held} connected ({failed} failed), the server holds "
          f"{accepted} more descriptors, {row['open_s']:.1f} s", flush=True)
    if held < n or accepted < n:
        sys.exit(f"{NAME}: {kind} holds {accepted} of {n} connections "
                 f"(client side {held}, {failed} failed): see {tmp}/{tag}.log")
    time.sleep(2)
    row["rss_after_mib"] = rss_kib(pid) / 1024
    row["growth_mib"] = row["rss_after_mib"] - row["rss_before_mib"]
    row["kib_per_connection"] = row["growth_mib"] * 1024 / n
    cpu, wake, ticks, threads = idle_load(pid, args.idle_seconds)
    row["idle_cpu_pct"], row["wakeups_per_s"] = cpu, wake
    row["idle_cpu_pct_ticks"] = ticks
    row["wakeups_by_thread"] = threads
    times = [probe(kind, port, i) for i in range(args.probes)]
    row["probe_ms"] = statistics.median(t[0] for t in times)
    row["probe_total_ms"] = statistics.median(t[1] for t in times)
    alive = ask(holders, "alive")
    row["still_open"] = sum(int(a[1].split()[0]) for a in alive)
    checked = {}
    for c in ask(holders, f"check {max(1, args.sample // len(holders))}"):
        for reply, k in json.loads(c[1]).items():
            checked[reply] = checked.get(reply, 0) + k
    row["sample_replies"] = checked
    want = "KO" if kind == "smsp" else "+PONG"
    print(f"  {tag}: RSS {row['rss_after_mib']:.1f} MiB (+{row['growth_mib']:.1f}, "
          f"{row['kib_per_connection']:.2f} KiB each); idle {cpu:.3f} % of a core, "
          f"{wake:.0f} wake-ups/s {threads}; probe {row['probe_ms']:.2f} ms "
          f"({row['probe_total_ms']:.2f} ms from connect); {row['still_open']} "
          f"still open; a sample answered {checked}", flush=True)
    for h in holders:
        h.stdin.write("quit\n")
        h.stdin.flush()
    for h in holders:
        stop(h)
    stop(proc)
    if row["still_open"] < n or set(checked) != {want}:
        sys.exit(f"{NAME}: {kind} lost held connections")
    return row


def fmt(row, key, f):
    return f.format(row[key]) if key in row else "—"


def main():
    global args, server_bin
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--counts", default="10000,50000")
    ap.add_argument("--redis", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--probes", type=int, default=5)
    ap.add_argument("--sample", type=int, default=200,
                    help="held connections that send a request at the end")
    ap.add_argument("--warm", action="store_true",
                    help="also rows where every held connection first sends "
                    "one request (COUNT with a bad cookie; PING) and reads its "
                    "reply, then idles")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    server_bin = os.path.abspath(os.path.join(args.bin, "smsp-actors"))
    if not os.access(server_bin, os.X_OK):
        sys.exit(f"{NAME}: {server_bin} is missing: build it first")
    if args.redis and not shutil.which("redis-server"):
        sys.exit(f"{NAME}: redis-server is missing (apt-get install redis-server), "
                 "or run with --no-redis")
    counts = [int(x) for x in args.counts.split(",")]
    limit = raise_nofile(max(counts) + HEADROOM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    kinds = ["smsp"] + (["redis"] if args.redis else [])
    rows, skipped = [], []
    tmp = tempfile.mkdtemp(prefix="smsp-idle.")
    try:
        for kind in kinds:
            for n in counts:
                if n + HEADROOM > limit:
                    print(f"  {kind}-{n}: skipped: a server holding {n} "
                          f"connections needs {n + HEADROOM} descriptors, the "
                          f"limit is {limit} (hard limit; raising it needs "
                          "CAP_SYS_RESOURCE)", flush=True)
                    skipped.append({"server": "smsp-actors" if kind == "smsp"
                                    else "redis", "connections": n,
                                    "skipped": f"descriptor limit {limit}"})
                    continue
                for warm in [False] + ([True] if args.warm else []):
                    rows.append(measure(kind, n, tmp, limit, warm))
    except KeyboardInterrupt:
        print(f"{NAME}: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"idle {args.idle_seconds:g} s per CPU figure; probe = median of "
          f"{args.probes} (smsp: the COUNT after REGISTER+LOGIN; Redis: PING)")
    print()
    print("| server | connections | RSS before MiB | RSS after MiB | growth MiB | "
          "KiB/connection | probe ms | idle CPU % (none / held) | "
          "wake-ups/s (none / held) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = r["server"] + (", 1 request each" if r["warm"] else "")
        print(f"| {label} | {r['connections']:,} | "
              f"{fmt(r, 'rss_before_mib', '{:.1f}')} | {fmt(r, 'rss_after_mib', '{:.1f}')} | "
              f"{fmt(r, 'growth_mib', '{:.1f}')} | {fmt(r, 'kib_per_connection', '{:.2f}')} | "
              f"{fmt(r, 'probe_ms', '{:.2f}')} | {r['idle_cpu_pct_no_conn']:.3f} / "
              f"{fmt(r, 'idle_cpu_pct', '{:.3f}')} | {r['wakeups_per_s_no_conn']:.0f} / "
              f"{fmt(r, 'wakeups_per_s', '{:.0f}')} |")
    for s in skipped:
        print(f"| {s['server']} | {s['connections']:,} | skipped: {s['skipped']} "
              "| | | | | | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"limit_nofile": limit, "idle_seconds": args.idle_seconds,
                       "rows": rows, "skipped": skipped}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_hold":
        signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent stops it
        hold(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5],
             sys.argv[6], sys.argv[7] == "1")
    else:
        main()
