#!/usr/bin/env python3
# Black-box test: signals and a log nobody reads never kill or stall the
# built server (issue 8 item 6).
"""Usage: signals_and_log_test.py SERVER_BIN

(a) The server's stderr into `head -c 10`, which exits after 10 bytes:
    after REGISTER and several DUMPs the server is alive and answers (no
    death by SIGPIPE), and stops on SIGTERM with exit 0.
(b) The server's stderr into a pipe nobody reads: many DUMPs
    (--dump-interval 0) fill the pipe many times over; every request is
    still answered, and SIGTERM stops the server with exit 0 in bounded
    time.
(c) SIGHUP: logged, the server goes on serving. With --log-file F: F moved
    away, SIGHUP, and the server writes F anew ("reopened"), later lines go
    to the new F and not to the moved one; a path that cannot be reopened
    keeps the old file; a log file that cannot be opened at start stops
    the start with exit 1 and a message.
(d) --log-file naming a FIFO nobody reads stops the start at once (it used
    to hang there, deaf to SIGTERM); with a reader the log flows through.
(e) --log-file /dev/full: the failure is told once on stderr, and the
    server goes on serving.

Timeouts are hang detectors only: a slow machine does not fail the test.
"""

import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blackbox_support as bb  # noqa: E402
from blackbox_support import (LISTENING, WAIT_S, check,  # noqa: E402
                              die_with_parent, read_file, run, run_case,
                              wait_for)

REPLY_S = 20


def start_server(binary, tmp, name, stderr, args=()):
    """The built server; its stdout goes to a file, its stderr to `stderr`
    (a file object, a pipe's descriptor, ...)."""
    return bb.Server(binary, tmp, name, args, stderr=stderr,
                     data_dir=os.path.join(tmp, name + ".data"))


def connect(port):
    """One connection; requests and replies are str."""
    return bb.Client(port, REPLY_S, text=True)


def stop(srv, timeout=WAIT_S):
    """SIGTERM: (exit status or None if it did not stop in time, seconds it
    took)."""
    t0 = time.monotonic()
    status = srv.stop(timeout)
    return status, time.monotonic() - t0


def register(client, user):
    reply = client.ask(f"REGISTER {user} pw")
    if reply and reply.startswith("OK "):
        return reply[3:]
    return None


def case_head(binary, tmp, cleanup):
    """(a) stderr into `head -c 10`."""
    head = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    cleanup.append(head.kill)
    srv = start_server(binary, tmp, "head", head.stdin,
                       ["--dump-interval", "0"])
    cleanup.append(srv.kill)
    head.stdin.close()  # only the server writes into the pipe now
    if not check("(a) the server starts with its stderr into head -c 10",
                 srv.port is not None, f"exit status: {srv.proc.poll()}"):
        return
    try:
        head.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    check("(a) head has read its 10 bytes and exited (the log's pipe has no "
          "reader now)", head.poll() is not None)
    client = connect(srv.port)
    try:
        cookie = register(client, "u1")
        check("(a) REGISTER u1 answers OK <cookie>", cookie is not None)
        replies = [client.ask("MESSAGE hello " + str(cookie)),
                   client.ask("STORE u1 " + str(cookie))]
        replies += [client.ask("DUMP") for _ in range(5)]
        check("(a) MESSAGE, STORE and 5 DUMPs answer OK",
              replies == ["OK"] * 7, f"replies: {replies}")
        # Any SIGPIPE would come with the log writer's next write, which
        # the DUMPs have queued: give it a moment, then ask again.
        time.sleep(1.0)
        reply = client.ask(f"COUNT u1 {cookie}")
        check("(a) the server is alive and answers after its log reader went "
              "away", srv.alive() and reply == "COUNTED 1",
              f"reply: {reply!r}", f"exit status: {srv.proc.poll()}")
    finally:
        client.close()
    status, took = stop(srv)
    check(f"(a) SIGTERM stops it with exit 0 ({took:.1f} s)", status == 0,
          f"exit status: {status}")


def case_unread_pipe(binary, tmp, cleanup):
    """(b) stderr into a pipe nobody reads."""
    read_end, write_end = os.pipe()
    cleanup.append(lambda: os.close(read_end))
    try:
        srv = start_server(binary, tmp, "unread", write_end,
                           ["--dump-interval", "0", "--sync", "off"])
    finally:
        os.close(write_end)
    cleanup.append(srv.kill)
    if not check("(b) the server starts with its stderr into a pipe nobody "
                 "reads", srv.port is not None,
                 f"exit status: {srv.proc.poll()}"):
        return
    users = [f"user{i:02d}" for i in range(20)]
    text = "x" * 40 + "-" + "y" * 40  # longer than DUMP shows of a text
    setup = connect(srv.port)
    clients = []
    try:
        cookies = {u: register(setup, u) for u in users}
        check("(b) 20 users registered",
              all(c is not None for c in cookies.values()))
        requests = []
        for u in users:
            for _ in range(10):
                requests += [f"MESSAGE {text} {cookies[u]}",
                             f"STORE {u} {cookies[u]}"]
        replies = setup.pipeline(requests)
        check("(b) 200 messages stored", replies == ["OK"] * len(requests),
              f"not OK: {[r for r in replies if r != 'OK'][:5]}")
        # Each full run lists 20 mailboxes of 10 texts: about 20 KB of log.
        # 5 connections x 60 DUMPs, each followed by a COUNT: about 6 MB of
        # log into a 64 KiB pipe, beyond the server's 4 MiB queue too.
        rounds = 60
        clients = [connect(srv.port) for _ in range(5)]
        results = []
        threads = []
        for i, c in enumerate(clients):
            u = users[i]
            reqs = []
            for _ in range(rounds):
                reqs += ["DUMP", f"COUNT {u} {cookies[u]}"]
            expected = ["OK", "COUNTED 10"] * rounds

            def run(c=c, reqs=reqs, expected=expected):
                got = c.pipeline(reqs, timeout=WAIT_S * 3)
                results.append((got == expected, got.count(None),
                                [r for r, e in zip(got, expected) if r != e]))
            threads.append(threading.Thread(target=run, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT_S * 4)
        missing = sum(n for _, n, _ in results) + (len(clients) - len(results))
        check(f"(b) all {len(clients) * rounds} DUMPs and "
              f"{len(clients) * rounds} COUNTs answered rightly while the log "
              "is not read", len(results) == len(clients)
              and all(ok for ok, _, _ in results),
              f"unanswered: {missing}",
              f"wrong: {[w[:3] for _, _, w in results if w][:3]}")
        pending = fcntl.ioctl(read_end, termios.FIONREAD, b"\0\0\0\0")
        pending = int.from_bytes(pending, sys.byteorder)
        check(f"(b) the log's pipe is full ({pending} bytes unread)",
              pending >= 40000, "the scenario did not fill the pipe")
        reply = setup.ask("REGISTER late pw")
        check("(b) a new REGISTER is still answered", reply is not None
              and reply.startswith("OK "), f"reply: {reply!r}")
        check("(b) the server is alive", srv.alive(),
              f"exit status: {srv.proc.poll()}")
    finally:
        setup.close()
        for c in clients:
            c.close()
    status, took = stop(srv)
    check(f"(b) SIGTERM stops it with exit 0 in bounded time ({took:.1f} s)",
          status == 0, f"exit status: {status} (None: still running after "
          f"{WAIT_S} s)")


def case_sighup_stderr(binary, tmp, cleanup):
    """(c) SIGHUP with the log on stderr."""
    log_path = os.path.join(tmp, "hup.err")
    with open(log_path, "wb") as err:
        srv = start_server(binary, tmp, "hup", err)
    cleanup.append(srv.kill)
    if not check("(c) the server starts (log on stderr)",
                 srv.port is not None, f"exit status: {srv.proc.poll()}"):
        return
    for n in (1, 2):
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: read_file(log_path).count("SIGHUP") >= 2 * n
                 or not srv.alive())
        logged = read_file(log_path).count("SIGHUP") >= 2 * n
        reply = None
        if srv.alive():
            client = connect(srv.port)
            try:
                reply = client.ask("COUNT a b")
            finally:
                client.close()
        check(f"(c) SIGHUP #{n}: logged, the server alive and answering",
              logged and srv.alive() and reply == "KO not logged in",
              f"reply: {reply!r}", f"exit status: {srv.proc.poll()}",
              *read_file(log_path).splitlines()[-4:])
        if not srv.alive():
            return
    check("(c) with stderr the log says there is nothing to reopen",
          "nothing to reopen" in read_file(log_path),
          *read_file(log_path).splitlines()[-4:])
    status, _ = stop(srv)
    check("(c) SIGTERM after SIGHUP: exit 0", status == 0,
          f"exit status: {status}")


def dump(srv, log_path, client, runs_before):
    """Sends DUMP and waits until the log at `log_path` has its run's last
    line: (reply, whether the line came)."""
    reply = client.ask("DUMP")
    came = wait_for(lambda: read_file(log_path).count("DUMP done")
                    > runs_before)
    return reply, bool(came)


def case_log_file(binary, tmp, cleanup):
    """(c) --log-file, moved away and reopened on SIGHUP."""
    logs = os.path.join(tmp, "logs")
    os.mkdir(logs)
    log_path = os.path.join(logs, "smsp.log")
    moved = log_path + ".1"
    moved2 = log_path + ".2"
    err_path = os.path.join(tmp, "file.err")
    with open(err_path, "wb") as err:
        srv = start_server(binary, tmp, "file", err,
                           ["--log-file", log_path, "--dump-interval", "0"])
    cleanup.append(srv.kill)
    if not check("(c) the server starts with --log-file",
                 srv.port is not None, f"exit status: {srv.proc.poll()}",
                 read_file(err_path)):
        return
    started = wait_for(lambda: "smsp-actors started" in read_file(log_path))
    check("(c) the log goes to the file, not to stderr",
          started and "smsp-actors started" not in read_file(err_path),
          f"file: {read_file(log_path)[-300:]!r}",
          f"stderr: {read_file(err_path)[-300:]!r}")
    check("(c) the log file has mode 0600",
          os.path.exists(log_path)
          and (os.stat(log_path).st_mode & 0o777) == 0o600,
          f"mode: {oct(os.stat(log_path).st_mode & 0o777)}"
          if os.path.exists(log_path) else "no file")
    client = connect(srv.port)
    try:
        reply, came = dump(srv, log_path, client, 0)
        check("(c) a DUMP goes to the log file", reply == "OK" and came,
              f"reply: {reply!r}")

        os.rename(log_path, moved)
        srv.proc.send_signal(signal.SIGHUP)
        reopened = wait_for(lambda: "reopened" in read_file(log_path))
        check("(c) after a move and SIGHUP the server creates the file again "
              "and says 'reopened' there", reopened and srv.alive(),
              f"new file: {read_file(log_path)!r}",
              f"moved file tail: {read_file(moved).splitlines()[-3:]}")
        reply, came = dump(srv, log_path, client, 0)
        check("(c) the next DUMP goes to the new file", reply == "OK" and came,
              f"reply: {reply!r}", f"new file: {read_file(log_path)[-300:]!r}")
        old = read_file(moved)
        check("(c) the moved file got nothing after the reopen (one DUMP run, "
              "no 'reopened')", old.count("DUMP done") == 1
              and "reopened" not in old, f"moved file: {old[-500:]!r}")

        # A path that cannot be opened on SIGHUP: the old file is kept.
        os.rename(log_path, moved2)
        os.mkdir(log_path)
        srv.proc.send_signal(signal.SIGHUP)
        refused = wait_for(lambda: "cannot reopen" in read_file(moved2))
        reply, came = dump(srv, moved2, client, 1)
        check("(c) a log file that cannot be reopened: the server says so in "
              "the old file, keeps writing there and keeps serving",
              refused and reply == "OK" and came and srv.alive(),
              f"reply: {reply!r}", f"old file: {read_file(moved2)[-500:]!r}")
        os.rmdir(log_path)
        srv.proc.send_signal(signal.SIGHUP)
        reopened = wait_for(lambda: "reopened" in read_file(log_path))
        check("(c) once the path is free again, SIGHUP reopens it",
              reopened, f"file: {read_file(log_path)!r}")
    finally:
        client.close()
    status, _ = stop(srv)
    check("(c) SIGTERM: exit 0, and its line is in the reopened file",
          status == 0 and "stopping on SIGTERM" in read_file(log_path),
          f"exit status: {status}", f"file: {read_file(log_path)[-300:]!r}")


def check_start_refused(binary, tmp, name, log_file, label, needle=""):
    """Starts the server with `--log-file log_file` and checks that it
    refuses to start: exit 1, stderr naming the file (and holding `needle`),
    no listening line."""
    err_path = os.path.join(tmp, name + ".err")
    with open(err_path, "wb") as err:
        srv = start_server(binary, tmp, name, err, ["--log-file", log_file])
    if srv.port is not None:
        srv.stop()
    srv.kill()
    err = read_file(err_path)
    check(f"{label} (exit 1, a message naming it, no listening)",
          srv.port is None and srv.proc.returncode == 1 and log_file in err
          and needle in err and LISTENING not in srv.out(),
          f"exit status: {srv.proc.returncode}", f"stderr: {err.strip()!r}")


def case_bad_log_file(binary, tmp, cleanup):
    """(c) a log file that cannot be opened stops the start."""
    check_start_refused(binary, tmp, "bad",
                        os.path.join(tmp, "missing", "dir", "smsp.log"),
                        "(c) a log file in a missing directory stops the "
                        "start")


def case_log_fifo(binary, tmp, cleanup):
    """(d) --log-file naming a FIFO: with nobody reading it the start stops
    at once (opening it used to wait for a reader for ever, deaf to
    SIGTERM); with a reader the log flows through it."""
    fifo = os.path.join(tmp, "log.fifo")
    os.mkfifo(fifo)
    check_start_refused(binary, tmp, "fifo", fifo,
                        "(d) a FIFO nobody reads stops the start", "FIFO")
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    cleanup.append(lambda: os.close(reader))
    got = []

    def read_some():
        try:
            got.append(os.read(reader, 65536).decode(errors="replace"))
        except BlockingIOError:
            pass
        return "DUMP done" in "".join(got)

    with open(os.path.join(tmp, "fifo2.err"), "wb") as err:
        srv = start_server(binary, tmp, "fifo2", err, ["--log-file", fifo])
    cleanup.append(srv.kill)
    check("(d) with a reader on the FIFO the server starts", srv.port is not None,
          f"stderr: {read_file(os.path.join(tmp, 'fifo2.err'))!r}")
    if srv.port is None:
        return
    client = connect(srv.port)
    try:
        reply = client.ask("DUMP")
        came = wait_for(read_some)
        check("(d) the DUMP's lines come through the FIFO",
              reply == "OK" and came, f"reply: {reply!r}",
              f"read: {''.join(got)[-300:]!r}")
    finally:
        client.close()
    status, _ = stop(srv)
    check("(d) SIGTERM: exit 0", status == 0, f"exit status: {status}")


def case_log_write_fails(binary, tmp, cleanup):
    """(e) a log file that cannot be written (/dev/full): the server says so
    on stderr, once, and goes on serving."""
    err_path = os.path.join(tmp, "full.err")
    with open(err_path, "wb") as err:
        srv = start_server(binary, tmp, "full", err,
                           ["--log-file", "/dev/full", "--dump-interval", "0"])
    cleanup.append(srv.kill)
    check("(e) the server starts with --log-file /dev/full",
          srv.port is not None, f"stderr: {read_file(err_path)!r}")
    if srv.port is None:
        return
    client = connect(srv.port)
    try:
        replies = [client.ask("DUMP") for _ in range(5)]
        told = wait_for(lambda: "cannot write /dev/full" in read_file(err_path))
        err = read_file(err_path)
        check("(e) every DUMP is answered and stderr says, once, that the "
              "log cannot be written",
              replies == ["OK"] * 5 and told
              and err.count("cannot write /dev/full") == 1,
              f"replies: {replies!r}", f"stderr: {err[-500:]!r}")
    finally:
        client.close()
    status, _ = stop(srv)
    check("(e) SIGTERM: exit 0", status == 0, f"exit status: {status}")


def main(binaries, tmp, cleanup):
    for case in (case_head, case_unread_pipe, case_sighup_stderr,
                 case_log_file, case_bad_log_file, case_log_fifo,
                 case_log_write_fails):
        run_case(case.__name__, case, binaries[0], tmp, cleanup)


if __name__ == "__main__":
    sys.exit(run(main, "smsp-signals."))
