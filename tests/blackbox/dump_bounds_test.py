#!/usr/bin/env python3
# Black-box test: what DUMP writes to the log is bounded, whatever the
# server holds and however often DUMP is sent (issue 8 item 5).
"""Usage: dump_bounds_test.py SERVER_BIN

Sets up 300 users (32-character names) with 3 messages each, the first 100
by name with 11, every listed text 90 bytes of control bytes (the most a
text can cost in the log, as \\xHH), and 12 messages on the IMQ, over one
pipelined connection (--sync off for speed). Then:
(a) 50 DUMPs pipelined over 10 connections: all answered OK; the log's
    "DUMP done" lines account for exactly 50 requests, in fewer runs than
    requests, and in at most 1 + elapsed / interval + 1 runs (1 s default).
(b) --dump=full: one run lists at most 100 mailboxes (the first 100 by
    name) with at most 10 texts each, and says 200 more are not listed.
(c) --dump=summary: figures and totals only, no mailbox, no text;
    --dump=off: not even figures, and DUMP still answers OK.
(d) one full run's log bytes are bounded whatever the number of users.

Timeouts are hang detectors only: a slow machine does not fail the test.
"""

import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blackbox_support as bb  # noqa: E402
from blackbox_support import (WAIT_S, check, run, run_case,  # noqa: E402
                              wait_for)

REPLY_S = 30
USERS = 300
LISTED = 100  # mailboxes a full run lists
TEXTS = 10  # texts a full run shows per mailbox
INTERVAL_S = 1.0  # the default --dump-interval
# The bound OPERATIONS.md and SECURITY.md state for one listing: "about
# 100 KB at most"; and the bound the listing's shape gives: LISTED lines of
# a 32-character name and TEXTS texts of at most 80 bytes shown as \xHH
# ("[" + 320 + "..." + "] "), the IMQ's line alike, and a few lines more.
DOCUMENTED_BYTES = 150 * 1000
SHAPE_BYTES = (LISTED + 1) * (100 + TEXTS * (2 + 80 * 4 + 3 + 2)) + 2000

class Server(bb.Server):
    """The built server on a shared data directory, with --sync off; its log
    (stderr) in a file, read without timestamps."""

    def __init__(self, binary, tmp, data, name, args=()):
        super().__init__(binary, tmp, name, ["--sync", "off"] + list(args),
                         data_dir=data)

    def log_lines(self):
        """The log's lines without their timestamp, level and component."""
        return [strip_prefix(line) for line in self.log().splitlines()]

    def log_tail(self, n=8):
        return ["log: " + line[:200] for line in self.log_lines()[-n:]]

    def dump_lines(self):
        return [line for line in self.log_lines() if line.startswith("DUMP")]

    def answered(self):
        """DUMP requests the log's "DUMP done" lines account for, and the
        number of runs."""
        counts = [int(m.group(1)) for line in self.log_lines()
                  if (m := re.match(r"DUMP done: (\d+) requests? answered",
                                    line))]
        return sum(counts), len(counts)

    def wait_answered(self, n):
        """Waits until the log accounts for `n` DUMPs (the log is written by
        a thread of its own, a little after the replies)."""
        wait_for(lambda: self.answered()[0] >= n)
        return self.answered()


def strip_prefix(line):
    """A log line without its timestamp, level and component."""
    return re.sub(r"^\S+ [A-Z]+ [a-z]+: ", "", line)


def name_of(i):
    return "w" * 29 + f"{i:03d}"  # 32 characters, sorted as i is


def hostile_text(i, k):
    """90 bytes, none printable: each shown in the log as 4 (\\xHH)."""
    ctrl = bytes(b for b in range(1, 32) if b not in (10, 13)) + b"\x7f\x9b\xff"
    start = (i * 7 + k) % len(ctrl)
    return ((ctrl[start:] + ctrl[:start]) * 4)[:90]


def setup(srv):
    """Registers USERS users and fills their mailboxes and the IMQ: True
    when every request was answered as expected."""
    client = bb.Client(srv.port, REPLY_S)
    try:
        names = [name_of(i) for i in range(USERS)]
        replies = client.pipeline([f"REGISTER {n} pw".encode() for n in names],
                                  REPLY_S * 4)
        if not check(f"{USERS} users registered over one pipelined "
                     "connection", all(r and r.startswith(b"OK ")
                                       for r in replies),
                     f"not OK: {[r for r in replies if not r or r[:3] != b'OK '][:3]}"):
            return False
        cookies = [r[3:] for r in replies]
        requests = []
        for i, n in enumerate(names):
            for k in range(11 if i < LISTED else 3):
                text = (hostile_text(i, k) if i < LISTED
                        else f"mark{i:03d}x{k}".encode())
                requests += [b"MESSAGE " + text + b" " + cookies[i],
                             f"STORE {n} ".encode() + cookies[i]]
        for k in range(12):
            requests.append(b"MESSAGE " + hostile_text(0, k) + b" "
                            + cookies[0])
        replies = client.pipeline(requests, REPLY_S * 8)
        bad = [r for r in replies if r != b"OK"]
        return check(f"{LISTED * 11 + (USERS - LISTED) * 3} messages stored "
                     "and 12 left on the IMQ", not bad,
                     f"{len(bad)} not OK, e.g. {bad[:3]}")
    finally:
        client.close()


def run_bounds(lines):
    """(first, last) indices of the last complete run in `lines` (without
    timestamps): from its "DUMP registry" (or "DUMP: off") line to its "DUMP
    done" line; None when there is none."""
    end = max((i for i, line in enumerate(lines)
               if line.startswith("DUMP done")), default=None)
    if end is None:
        return None
    start = end
    while start > 0 and not (lines[start].startswith("DUMP registry")
                             or lines[start].startswith("DUMP: off")):
        start -= 1
    return start, end


def single_dump(srv):
    """One DUMP alone, on a connection of its own: (reply, the run's lines
    without timestamps, the bytes it added to the log)."""
    before_answered = srv.answered()[0]
    size_before = len(srv.log_bytes())
    client = bb.Client(srv.port, REPLY_S)
    try:
        reply = client.pipeline([b"DUMP"], REPLY_S)[0]
    finally:
        client.close()
    # The log is written by a thread of its own, a little after the reply:
    # wait for the run's last line or, should it never come, for the log to
    # stop growing.
    last_size = -1
    stable_since = time.monotonic()
    deadline = time.monotonic() + WAIT_S
    while (time.monotonic() < deadline
           and srv.answered()[0] <= before_answered):
        size = len(srv.log_bytes())
        if size != last_size:
            last_size, stable_since = size, time.monotonic()
        elif time.monotonic() - stable_since > 2.0:
            break
        time.sleep(0.05)
    added = srv.log_bytes()[size_before:]
    raw = added.decode(errors="replace").splitlines()
    lines = [strip_prefix(line) for line in raw]
    bounds = run_bounds(lines)
    seg = lines[bounds[0]:bounds[1] + 1] if bounds else []
    return reply, seg, len(added)


def case_folding(srv):
    """(a) 50 DUMPs pipelined over 10 connections."""
    clients = [bb.Client(srv.port, REPLY_S) for _ in range(10)]
    results = [None] * len(clients)
    try:
        t0 = time.monotonic()
        threads = []
        for i, c in enumerate(clients):
            def run(i=i, c=c):
                results[i] = c.pipeline([b"DUMP"] * 5, REPLY_S * 4)
            threads.append(threading.Thread(target=run, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(REPLY_S * 5)
        elapsed = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    replies = [r for rs in results if rs for r in rs]
    check("(a) 50 DUMPs over 10 connections: every one answered OK",
          len(replies) == 50 and all(r == b"OK" for r in replies),
          f"replies: {[r for r in replies if r != b'OK'][:5]}, "
          f"{50 - len(replies)} missing")
    requests, runs = srv.wait_answered(50)
    check(f"(a) the log's 'DUMP done' lines account for exactly 50 requests "
          f"({requests} in {runs} runs)", requests == 50, *srv.log_tail())
    check(f"(a) fewer runs than requests ({runs} < 50)", 0 < runs < 50)
    most = 1 + elapsed / INTERVAL_S + 1
    check(f"(a) at most one run per --dump-interval ({runs} runs in "
          f"{elapsed:.1f} s, at most {most:.1f})", runs <= most)
    check("(a) the log says DUMPs were folded",
          any("folded)" in line for line in srv.log_lines()), *srv.log_tail())


def case_full(srv):
    """(b) and (d): one full run."""
    reply, seg, size = single_dump(srv)
    check("(b) a single DUMP answers OK and its run is in the log",
          reply == b"OK" and seg != [], f"reply: {reply!r}", *srv.log_tail())
    boxes = [line for line in seg if line.startswith("DUMP mailbox ")]
    listed = [re.match(r"DUMP mailbox (\S+):", line).group(1)
              for line in boxes]
    check(f"(b) a full run lists at most {LISTED} mailboxes, the first by "
          f"name ({len(boxes)})", listed == [name_of(i) for i in range(LISTED)],
          f"listed: {listed[:3]} ... {listed[-3:]}")
    shown = [line.count(" [") for line in boxes]
    check(f"(b) each mailbox line shows at most {TEXTS} texts (of 11)",
          shown and max(shown) <= TEXTS
          and all(re.search(r": 11 message\(s\)", line) for line in boxes),
          f"texts per line: {sorted(set(shown))}")
    more = [line for line in seg if line.startswith("DUMP mailboxes:")]
    check("(b) a line says how many more are not listed (200)",
          len(more) == 1 and f"and {USERS - LISTED} more not listed" in more[0],
          f"lines: {more}")
    imq = [line for line in seg if line.startswith("DUMP imq:")]
    check(f"(b) the IMQ line shows at most {TEXTS} of its 12 texts",
          len(imq) == 1 and imq[0].startswith("DUMP imq: 12 message(s)")
          and imq[0].count(" [") <= TEXTS, f"lines: {[l[:80] for l in imq]}")
    totals = f"DUMP totals: {USERS} account(s), {LISTED * 11 + (USERS - LISTED) * 3} " \
             "message(s) in mailboxes, 12 on the IMQ"
    check("(b) the totals count everything", totals in seg,
          f"expected: {totals!r}",
          f"got: {[l for l in seg if l.startswith('DUMP totals')]}")
    check("(b) texts are shown escaped (no control byte in the log)",
          not re.search(rb"[\x00-\x09\x0b-\x1f\x7f-\xff]", srv.log_bytes()))
    check(f"(d) one DUMP's log is bounded by a full run's shape: {size} bytes, "
          f"at most {SHAPE_BYTES} however many users", 0 < size <= SHAPE_BYTES)
    check(f"(d) one DUMP writes at most about 100 KB (OPERATIONS.md, "
          f"SECURITY.md): {size} bytes < {DOCUMENTED_BYTES}",
          0 < size < DOCUMENTED_BYTES,
          f"{len(boxes)} mailbox lines of {TEXTS} texts of 90 control bytes "
          "each: 80 shown bytes as \\xHH = 320 bytes a text",
          f"longest line: {max((len(l) for l in seg), default=0)} bytes")


def case_summary(srv):
    """(c) --dump=summary."""
    reply, seg, _ = single_dump(srv)
    check("(c) --dump=summary: DUMP answers OK and its run is in the log",
          reply == b"OK" and seg != [], f"reply: {reply!r}", *srv.log_tail())
    kinds = sorted({line.split(":", 1)[0] for line in srv.dump_lines()})
    check("(c) --dump=summary writes only figures and totals",
          kinds == ["DUMP done", "DUMP registry", "DUMP store", "DUMP totals"],
          f"kinds of DUMP lines: {kinds}")
    log = srv.log_bytes()
    check("(c) --dump=summary writes no name and no text",
          b"[" not in log and b"\\x" not in log and b"mark" not in log
          and name_of(0).encode() not in log,
          *[l[:120] for l in srv.log_lines() if "[" in l or "\\x" in l][:3])
    totals = [line for line in seg if line.startswith("DUMP totals:")]
    check("(c) --dump=summary still gives the totals",
          len(totals) == 1 and f"{USERS} account(s)" in totals[0],
          f"lines: {totals}")


def case_off(srv):
    """(c) --dump=off."""
    client = bb.Client(srv.port, REPLY_S)
    try:
        replies = client.pipeline([b"DUMP"] * 3, REPLY_S * 2)
    finally:
        client.close()
    check("(c) --dump=off: DUMP still answers OK", replies == [b"OK"] * 3,
          f"replies: {replies}")
    requests, _ = srv.wait_answered(3)
    check("(c) --dump=off: the log accounts for the DUMPs", requests == 3,
          *srv.log_tail())
    figures = [line for line in srv.dump_lines()
               if not (line.startswith("DUMP done")
                       or line.startswith("DUMP: off"))]
    check("(c) --dump=off writes no figures, no totals, no listing",
          not figures, *[l[:120] for l in figures[:5]])
    log = srv.log_bytes()
    check("(c) --dump=off writes no name and no text",
          b"[" not in log and b"\\x" not in log and b"mark" not in log
          and name_of(0).encode() not in log)


def main(binaries, tmp, cleanup):
    binary = binaries[0]
    data = os.path.join(tmp, "data")
    servers = []
    cleanup.append(lambda: [srv.kill() for srv in servers])
    for name, args, cases in (
            ("full", [], (case_folding, case_full)),
            ("summary", ["--dump=summary"], (case_summary,)),
            ("off", ["--dump=off"], (case_off,))):
        srv = Server(binary, tmp, data, name, args)
        servers.append(srv)
        if not check(f"the server starts ({name})", srv.port is not None,
                     f"exit status: {srv.proc.poll()}", *srv.log_tail()):
            break
        if name == "full" and not setup(srv):
            break
        for case in cases:
            run_case(case.__name__, case, srv, details=srv.log_tail)
        status = srv.stop()
        check(f"the server ({name}) stops on SIGTERM with exit 0",
              status == 0, f"exit status: {status}", *srv.log_tail())


if __name__ == "__main__":
    sys.exit(run(main, "smsp-dump."))
