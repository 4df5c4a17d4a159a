#!/usr/bin/env python3
# Black-box test: smsp-bench against the built server and fake servers.
"""Usage: bench_test.py SERVER_BIN BENCH_BIN

Against a real `smsp-actors --pwhash min`: a short mail run prints one JSON
line with requests > 0, no errors and ordered percentiles
(p50 <= p90 <= p99 <= p99.9 <= max); its --csv file has the documented
columns, per-second rows that add up to the total row; the text report and
the set-up estimate; no live line when stdout is a pipe and one on a
pseudo-terminal; --users 2 with 4 connections (shared mailboxes), --users 6
with 2 connections for the store mix, refused for the mail mix; the bench
users' names (bench<prefix>u<i>). Against fake servers: wrong replies and KO
replies, a server closing connections, one that never answers and bench
connections refused after set-up each make exit 1 with their kind under
"errors", endless KO reasons stay bounded under "other"; a LOGIN slower
than 20 ms brings the full-cost hashing warning. --plot writes a PNG when gnuplot is installed, and without gnuplot
on PATH says so and exits 1 after the results. With redis-server
installed, --target redis with shared list keys.

Asserts behaviour, never speed: the runs are short but nothing is timed
tightly.
"""

import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (Client, Server, check, free_port,  # noqa: E402
                              run)

FACTOR = max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
# A hang detector only.
RUN_S = 120 * FACTOR


def short(duration="0.5"):
    """A brief run: 4 connections, `duration` s after 0.1 s of warmup."""
    return ["-d", duration, "--warmup", "0.1", "-c", "4"]


COOKIE = "0123456789abcdef" * 2
# Above the bench's 20 ms threshold for a LOGIN hashing at full cost.
LOGIN_DELAY_S = 0.1


def bench(binary, port, args, tmp, env=None):
    """Runs the bench with stdout and stderr piped: (status, out, err)."""
    proc = subprocess.run([binary, "--port", str(port)] + args, cwd=tmp,
                          stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=RUN_S, env=env)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def parse_json(out):
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def details(status, out, err):
    return [f"exit status: {status}", f"stdout: {out[-600:]!r}",
            f"stderr: {err[-600:]!r}"]


def bench_fake(binary, fake, args, tmp):
    """Runs the bench against `fake` (a FakeServer), which it then stops."""
    try:
        return bench(binary, fake.port, args, tmp)
    finally:
        fake.stop()


class FakeServer:
    """A TCP server on 127.0.0.1 answering set-up (REGISTER, LOGIN) right
    and each COUNT after the first `good` ones of a connection per `mode`:
    'wrong' alternates 'KO not logged in' and 'garbage', 'many' answers
    'KO reason <n>' with n counting up, 'close' closes the connection,
    'silent' never answers; 'slow-login' answers every COUNT right and
    each LOGIN after LOGIN_DELAY_S, like a server hashing at full cost;
    'refuse' stops listening before it answers the set-up request number
    `good`, so the bench connections that follow are refused."""

    def __init__(self, mode, good=3):
        self.mode = mode
        self.good = good
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.setup_requests = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def serve(self, conn):
        buf = b""
        counts = 0
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                replies = []
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word = line.split(b" ", 1)[0]
                    if word in (b"REGISTER", b"LOGIN"):
                        if word == b"LOGIN" and self.mode == "slow-login":
                            time.sleep(LOGIN_DELAY_S)
                        with self.lock:
                            self.setup_requests += 1
                            last = self.setup_requests == self.good
                        if self.mode == "refuse" and last:
                            self.stop()
                        replies.append(b"OK " + COOKIE.encode())
                        continue
                    counts += 1
                    if counts <= self.good or self.mode == "slow-login":
                        replies.append(b"COUNTED 0")
                    elif self.mode == "wrong":
                        replies.append(b"KO not logged in" if counts % 2
                                       else b"garbage")
                    elif self.mode == "many":
                        replies.append(b"KO reason %d" % counts)
                    elif self.mode == "close":
                        conn.sendall(b"".join(r + b"\n" for r in replies))
                        return
                    # 'silent': no reply at all.
                try:
                    conn.sendall(b"".join(r + b"\n" for r in replies))
                except OSError:
                    return

    def stop(self):
        self.stopped = True
        # close() alone leaves the socket listening while accept() blocks on
        # it in the other thread; shutdown() stops it and wakes accept().
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def check_json_and_csv(bench_bin, port, tmp):
    csv_path = os.path.join(tmp, "run.csv")
    status, out, err = bench(bench_bin, port, short() + [
        "--mix", "mail", "--json", "--csv", csv_path], tmp)
    result = parse_json(out)
    check("a short mail run exits 0 with one JSON line",
          status == 0 and result is not None, *details(status, out, err))
    if result is None:
        return
    lat = result.get("latency_us", {})
    keys = ("p50", "p90", "p99", "p99_9", "max")
    check("JSON: requests > 0, no errors, an empty errors-by-kind object",
          result.get("requests", 0) > 0 and result.get("error_count") == 0
          and result.get("errors") == {} and result.get("dropped") == 0,
          json.dumps(result))
    check("JSON: p50 <= p90 <= p99 <= p99.9 <= max, all > 0",
          all(k in lat for k in keys)
          and 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"]
          <= lat["max"], json.dumps(lat))
    check("JSON: 4 connections, 4 users, 5 requests a mail cycle",
          result.get("connections") == 4 and result.get("users") == 4
          and result.get("cycle_requests") == 5
          and abs(result["cycles_per_s"] * 5 - result["requests_per_s"])
          <= 0.01 * result["requests_per_s"] + 1, json.dumps(result))
    check("no live line when stdout is not a terminal",
          "\r" not in out and len(out.strip().splitlines()) == 1, repr(out))
    check("the set-up estimate is printed to stderr",
          "set-up: one REGISTER took" in err and "more users over" in err,
          err)
    try:
        with open(csv_path) as f:
            rows = [line.rstrip("\n").split(",") for line in f]
    except OSError as e:
        check("--csv writes its file", False, repr(e))
        return
    header = ["second", "requests", "cycles", "p50_us", "p99_us", "errors"]
    ok = bool(rows) and rows[0] == header and len(rows) >= 3
    body, total = (rows[1:-1], rows[-1]) if ok else ([], [])
    try:
        ok = ok and all(len(r) == 6 for r in rows) and total[0] == "total"
        seconds = [[float(x) for x in r] for r in body]
        totals = [float(x) for x in total[1:]]
        ok = ok and sum(r[1] for r in seconds) == totals[0] == \
            result["requests"]
        ok = ok and all(abs(r[2] * 5 - r[1]) <= 1 for r in seconds)
        ok = ok and all(r[3] <= r[4] for r in seconds)
        ok = ok and all(r[5] == 0 for r in seconds) and totals[4] == 0
        ok = ok and seconds[-1][0] <= 0.5 + 1e-6
    except (ValueError, IndexError):
        ok = False
    check("--csv: the header, 6 columns a row, per-second rows adding up to "
          "the total row and the JSON requests", ok,
          *[",".join(r) for r in rows[:12]])


def check_text_report(bench_bin, port, tmp):
    status, out, err = bench(bench_bin, port, short() + [
        "--mix", "count", "--user-prefix", "tx"], tmp)
    check("text report: throughput, the five percentiles, errors 0",
          status == 0 and "latency (us)   p50 " in out and "p99.9" in out
          and "errors         0" in out and "\r" not in out,
          *details(status, out, err))
    # The bench users carry the documented names and passwords.
    c = Client(port, 30 * FACTOR, text=True)
    try:
        reply = c.ask("LOGIN benchtxu3 benchpw3")
    finally:
        c.close()
    check("bench users are named bench<prefix>u<i>",
          reply.startswith("OK ") and "benchtxu0.." in err, reply, err)


def check_json_file(bench_bin, port, tmp):
    path = os.path.join(tmp, "result.json")
    status, out, err = bench(bench_bin, port, short() + [
        "--mix", "count", "--user-prefix", "jf", "--json", path], tmp)
    try:
        with open(path) as f:
            result = parse_json(f.read())
    except OSError:
        result = None
    check("--json FILE: the JSON line in FILE, the text report on stdout",
          status == 0 and result is not None and result.get("requests", 0) > 0
          and "latency (us)   p50 " in out, *details(status, out, err))
    status, out, err = bench(bench_bin, port, short() + [
        "--mix", "count", "--user-prefix", "jg", "--json",
        os.path.join(tmp, "no-such-dir", "r.json")], tmp)
    check("--json FILE that cannot be written: the report, a message, exit 1",
          status == 1 and "latency (us)   p50 " in out
          and "--json: cannot write" in err, *details(status, out, err))


def check_users(bench_bin, port, tmp):
    for mix in ("mail", "mailbox", "read"):
        status, out, err = bench(bench_bin, port, short() + [
            "--mix", mix, "--users", "2", "--json"], tmp)
        result = parse_json(out) or {}
        check(f"--users 2 -c 4 --mix {mix}: shared users, no errors",
              status == 0 and result.get("users") == 2
              and result.get("requests", 0) > 0
              and result.get("error_count") == 0,
              *details(status, out, err))
    status, out, err = bench(bench_bin, port, [
        "-d", "0.5", "--warmup", "0.1", "-c", "2", "--mix", "store",
        "--users", "6", "--json"], tmp)
    result = parse_json(out) or {}
    check("--users 6 -c 2 --mix store: STOREs to other users, no errors",
          status == 0 and result.get("users") == 6
          and result.get("requests", 0) > 0
          and result.get("error_count") == 0, *details(status, out, err))
    status, out, err = bench(bench_bin, port, [
        "-c", "2", "--mix", "mail", "--users", "6"], tmp)
    check("--users above --connections refused for the mail mix (exit 2)",
          status == 2 and "--users" in err, *details(status, out, err))


def check_error_kinds(bench_bin, tmp):
    for mode, kinds in (("wrong", ("KO not logged in", "wrong reply")),
                        ("close", ("connection closed",)),
                        ("silent", ("timeout",))):
        args = ["--mix", "count", "--json", "-c", "2", "--warmup", "0.1"]
        # Long enough for the kinds to show however busy the machine: a
        # fake server answers in microseconds.
        if mode == "silent":
            args += ["-d", "2.5", "--timeout", "0.5"]
        else:
            args += ["-d", "2"]
        status, out, err = bench_fake(bench_bin, FakeServer(mode), args, tmp)
        result = parse_json(out) or {}
        errors = result.get("errors", {})
        check(f"a fake server ({mode}): exit 1, errors by kind "
              f"{', '.join(kinds)}",
              status == 1 and all(errors.get(k, 0) > 0 for k in kinds)
              and result.get("error_count") == sum(errors.values()),
              *details(status, out, err))
        if mode == "wrong":
            example = result.get("error_examples", {}).get("wrong reply", "")
            check("the first wrong reply is kept as the kind's example",
                  "'garbage'" in example, json.dumps(result))
    # A server with a new KO reason for every request: the kinds stay
    # bounded, the rest counted as 'other'.
    # 33 replies or more, well within 2 s on a busy machine.
    status, out, err = bench_fake(bench_bin, FakeServer("many"), [
        "--mix", "count", "--json", "-c", "2", "-d", "2", "--warmup",
        "0.1"], tmp)
    result = parse_json(out) or {}
    errors = result.get("errors", {})
    check("endless KO reasons: at most 33 kinds, the rest under 'other'",
          status == 1 and 0 < len(errors) <= 33 and errors.get("other", 0) > 0
          and result.get("error_count") == sum(errors.values()),
          *details(status, out, err))
    # Connections refused after set-up: 'connect failed', no requests.
    # With -c 2 set-up is REGISTER and LOGIN of the first user, then
    # REGISTER of the second.
    status, out, err = bench_fake(bench_bin, FakeServer("refuse", good=3), [
        "--mix", "count", "--json", "-c", "2", "-d", "0.3", "--warmup", "0"],
        tmp)
    result = parse_json(out) or {}
    check("bench connections refused: exit 1, 'connect failed' 2 times",
          status == 1 and result.get("errors") == {"connect failed": 2}
          and result.get("requests") == 0, *details(status, out, err))
    # The text report lists the kinds too.
    status, out, err = bench_fake(bench_bin, FakeServer("wrong"), [
        "--mix", "count", "-c", "1", "-d", "0.3", "--warmup", "0"], tmp)
    check("the text report lists errors by kind with an example",
          status == 1 and "KO not logged in" in out
          and "wrong reply (first:" in out, *details(status, out, err))


def check_setup_warning(bench_bin, tmp):
    """A LOGIN slower than 20 ms: the bench warns of full-cost hashing and
    suggests --pwhash min, and still runs."""
    status, out, err = bench_fake(bench_bin, FakeServer("slow-login"), [
        "--mix", "count", "-c", "2", "-d", "0.3", "--warmup", "0"], tmp)
    check("a slow LOGIN: the set-up estimate, a full-cost hashing warning "
          "naming --pwhash min, exit 0",
          status == 0 and "set-up: one REGISTER took" in err
          and "full cost" in err and "--pwhash min" in err,
          *details(status, out, err))


def check_redis(bench_bin, tmp, cleanup):
    """--target redis with shared list keys, when redis-server is
    installed."""
    if not shutil.which("redis-server"):
        print("SKIP: --target redis (redis-server not installed)")
        return
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tmp],
        cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    cleanup.append(proc.kill)
    deadline = time.monotonic() + 30 * FACTOR
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    for users in ("4", "2"):
        status, out, err = bench(bench_bin, port, short() + [
            "--target", "redis", "--mix", "mail", "--users", users,
            "--json"], tmp)
        result = parse_json(out) or {}
        check(f"--target redis --mix mail --users {users} -c 4: no errors",
              status == 0 and result.get("users") == int(users)
              and result.get("requests", 0) > 0
              and result.get("error_count") == 0,
              *details(status, out, err))
    proc.kill()
    proc.wait()


def check_plot(bench_bin, port, tmp):
    png = os.path.join(tmp, "run.png")
    if shutil.which("gnuplot"):
        status, out, err = bench(bench_bin, port, short("1.5") + [
            "--mix", "mail", "--plot", png], tmp)
        try:
            with open(png, "rb") as f:
                magic = f.read(8)
        except OSError:
            magic = b""
        check("--plot writes a PNG (gnuplot installed)",
              status == 0 and magic == b"\x89PNG\r\n\x1a\n",
              *details(status, out, err), f"magic: {magic!r}")
    else:
        print("SKIP: --plot with gnuplot (not installed)")
    # Without gnuplot on PATH: said so, results printed first, exit 1.
    empty = os.path.join(tmp, "empty-path")
    os.makedirs(empty, exist_ok=True)
    env = dict(os.environ, PATH=empty)
    status, out, err = bench(bench_bin, port, short() + [
        "--mix", "count", "--plot", os.path.join(tmp, "none.png")], tmp, env)
    check("--plot without gnuplot: results, a clear message, exit 1",
          status == 1 and "gnuplot is not installed" in err
          and "latency (us)" in out, *details(status, out, err))


def check_live_line(bench_bin, port, tmp):
    """Under a pseudo-terminal the bench prints its live line."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [bench_bin, "--port", str(port), "--mix", "count", "-c", "2",
         "-d", "3", "--warmup", "0.1"], cwd=tmp, stdin=subprocess.DEVNULL,
        stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO once the bench has exited
            break
        if not data:
            break
        out += data
    os.close(master)
    status = proc.wait(RUN_S)
    text = out.decode(errors="replace")
    check("on a terminal: a live line (\\r, req/s, cycles/s, p99, errors)",
          status == 0 and "\r" in text and "req/s" in text
          and "cycles/s" in text and " p99 " in text and "errors 0" in text,
          f"exit status: {status}", repr(text[-800:]))


def body(args, tmp, cleanup):
    server_bin, bench_bin = args
    server = Server(server_bin, tmp, "server")
    cleanup.append(server.kill)
    if not check("the server starts", server.port is not None):
        return
    check_json_and_csv(bench_bin, server.port, tmp)
    check_text_report(bench_bin, server.port, tmp)
    check_json_file(bench_bin, server.port, tmp)
    check_users(bench_bin, server.port, tmp)
    check_plot(bench_bin, server.port, tmp)
    check_live_line(bench_bin, server.port, tmp)
    check_error_kinds(bench_bin, tmp)
    check_setup_warning(bench_bin, tmp)
    check_redis(bench_bin, tmp, cleanup)
    check("the server is still running", server.alive(),
          *server.log_tail())


if __name__ == "__main__":
    sys.exit(run(body, "smsp-bench-test-", ("SERVER_BIN", "BENCH_BIN")))
