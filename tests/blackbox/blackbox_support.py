# Helpers shared by the black-box test scripts: checks, server, line client.
"""Imported by the *_test.py scripts of this folder (each puts its own folder
on sys.path first, so the working directory does not matter).

- check(), run_case(), run(): PASS/FAIL lines, a case whose OSError (a server
  that died or stopped answering) is a failure and not a crash, and the frame
  of a test's main ending in `N passed, M failed` (exit 1 if any failed).
- Server: the built smsp-actors on an ephemeral port with `--pwhash min` and
  a data directory of its own, started until it prints its listening line
  (bounded), stopped by SIGTERM with SIGKILL as the fallback.
- Client, recv_line(): LF-framed requests and replies over TCP, pipelined
  from a thread so that a server that stops reading cannot deadlock a test.

Timeouts are hang detectors only: a slow machine does not fail a test.
"""

import contextlib
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

# Bounds on waiting for a process or a log line: a hang fails the test, a
# slow machine does not.
WAIT_S = 30
LISTENING = "smsp-actors listening on "

passed = 0
failed = 0


def check(name, ok, *details):
    """Prints `PASS: name` or `FAIL: name` and the details, counts it and
    returns `ok`."""
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS: {name}")
    else:
        failed += 1
        print(f"FAIL: {name}")
        for line in details:
            print(f"    {line}")
    sys.stdout.flush()
    return ok


def run_case(label, case, *args, details=lambda: ()):
    """Runs case(*args). An OSError (a server that died or stopped answering)
    is the failure `<label> runs to its end`, with `details()` shown, not a
    crash of the test."""
    try:
        case(*args)
    except OSError as e:
        check(f"{label} runs to its end", False, repr(e), *details())


def run(body, tmp_prefix, arg_names=("SERVER_BIN",)):
    """A test's main: with one argument per `arg_names` (paths of built
    binaries, made absolute) calls body(args, tmp, cleanup) with a fresh
    temporary directory and an empty list; afterwards runs the callables
    `body` put in `cleanup`, last first (an OSError in one is ignored),
    removes the directory and prints `N passed, M failed`. Returns the exit
    status: 0 if no check failed, else 1; 2 on a wrong command line."""
    if len(sys.argv) != len(arg_names) + 1:
        print(f"usage: {sys.argv[0]} {' '.join(arg_names)}", file=sys.stderr)
        return 2
    args = [os.path.abspath(arg) for arg in sys.argv[1:]]
    tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    cleanup = []
    try:
        body(args, tmp, cleanup)
    finally:
        for action in reversed(cleanup):
            try:
                action()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def free_port():
    """A loopback port that was free a moment ago: nothing listens on it
    (bound, then closed), and a node may be started on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent():
    """Run in the child: the kernel kills it if the test dies (a ctest
    timeout), so no server outlives the test. prlimit keeps it across its
    exec of the server."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def read_file(path):
    """A file's text ('' if it does not exist)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout=WAIT_S):
    """Polls `predicate` until it holds or `timeout` passes: its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


class Server:
    """The built server: `prefix` (e.g. prlimit) + binary + `--port 0` (left
    out when not `ephemeral_port`) `--pwhash min --data-dir DATA` + `args`,
    run in `tmp`. Its stdout goes to tmp/NAME.out; its stderr (the log) to
    tmp/NAME.err, or to `stderr` when given (a file object, a pipe's
    descriptor, ...). DATA is `data_dir`, by default tmp/NAME.

    The constructor returns once the server prints its listening line
    (`port` then holds the port), exits, or `start_s` pass; in the last case
    it is killed. `port` is None unless it started."""

    def __init__(self, binary, tmp, name, args=(), *, data_dir=None,
                 prefix=(), stderr=None, start_s=WAIT_S, ephemeral_port=True):
        self.name = name
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err") if stderr is None \
            else None
        self.port = None
        argv = list(prefix) + [os.path.abspath(binary)]
        if ephemeral_port:
            argv += ["--port", "0"]
        argv += ["--pwhash", "min", "--data-dir",
                 data_dir or os.path.join(tmp, name)] + list(args)
        log_to = (open(self.err_path, "wb") if stderr is None
                  else contextlib.nullcontext(stderr))
        with open(self.out_path, "wb") as out, log_to as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=tmp, preexec_fn=die_with_parent)
        deadline = time.monotonic() + start_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(LISTENING + r"\S+:(\d+)$", self.out(), re.M)
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        self.kill()

    def out(self):
        """Its stdout so far."""
        return read_file(self.out_path)

    def log_bytes(self):
        """Its log (stderr) so far, when that goes to tmp/NAME.err."""
        if self.err_path is None:
            return b""
        with open(self.err_path, "rb") as f:
            return f.read()

    def log(self):
        return self.log_bytes().decode(errors="replace")

    def log_tail(self, n=12):
        """The log's last `n` lines, for a failure's details."""
        return ["log: " + line for line in self.log().splitlines()[-n:]]

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=WAIT_S):
        """SIGTERM: its exit status, or None (and SIGKILL) if it did not stop
        within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def recv_line(sock, buf, timeout):
    """Reads `sock` until `buf` holds a whole line: (the line without its
    LF, the bytes after it); (None, buf) at EOF, on an error, or once
    `timeout` has passed."""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        try:
            chunk = sock.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            return None, buf
        buf += chunk
    line, buf = buf.split(b"\n", 1)
    return line, buf


def _send_quietly(sock, data):
    try:
        sock.sendall(data)
    except OSError:
        pass


class Client:
    """One connection to 127.0.0.1:`port`, LF-framed requests and replies:
    bytes, or str when `text`. `reply_s` bounds the connect and, by default,
    the wait for a reply (three times that for a pipeline)."""

    def __init__(self, port, reply_s, text=False):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=reply_s)
        self.reply_s = reply_s
        self.text = text
        self.buf = b""

    def line(self, timeout=None):
        """The next reply line; None at EOF or after `timeout`."""
        line, self.buf = recv_line(
            self.sock, self.buf, self.reply_s if timeout is None else timeout)
        if line is None or not self.text:
            return line
        return line.decode(errors="replace")

    def _encode(self, request):
        return request.encode() if self.text else request

    def ask(self, request):
        self.sock.sendall(self._encode(request) + b"\n")
        return self.line()

    def pipeline(self, requests, timeout=None):
        """Sends all requests at once, from a thread so that the server's
        flow control cannot deadlock the test; returns the replies (None for
        each one missing after `timeout`)."""
        if timeout is None:
            timeout = 3 * self.reply_s
        data = b"".join(self._encode(r) + b"\n" for r in requests)
        threading.Thread(target=_send_quietly, args=(self.sock, data),
                         daemon=True).start()
        deadline = time.monotonic() + timeout
        replies = []
        for _ in requests:
            reply = self.line(max(0.0, deadline - time.monotonic()))
            if reply is None:
                break
            replies.append(reply)
        return replies + [None] * (len(requests) - len(replies))

    def close(self):
        self.sock.close()
