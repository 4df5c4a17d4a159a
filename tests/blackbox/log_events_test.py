#!/usr/bin/env python3
# Black-box test: the log lines an operator relies on (issue 12 item 3).
"""Usage: log_events_test.py SERVER_BIN FAIL2BAN_FILTER

(a) Every line is "<UTC time> <LEVEL> <component>: <text>". The start line
    gives the absolute data dir, "created" with its counts; after a restart
    "opened" with 1 account, 1 mailbox message and 1 on the IMQ. SIGTERM
    logs "stopping on SIGTERM", then "stopped cleanly".
(b) At info: REGISTER with the user and the client's address, a refused
    REGISTER with its reason, each failed LOGIN with the user, the address,
    the failures counted and the penalty, the penalty starting, a LOGIN
    refused during it; a name with control bytes is escaped. fail2ban's
    own fail2ban-regex, with the shipped filter, finds exactly the failed
    and refused LOGINs at 127.0.0.1 (when fail2ban is installed), in the log
    file and as the journal hands them to fail2ban.
(c) At debug: each connection opened and closed by its client; at info, an
    idle connection closed by the server.
(d) A short penalty logs its end.
(e) --log-level warn keeps the info lines out; a bad level is a usage
    error (exit 2).

Timeouts are hang detectors only: a slow machine does not fail the test.
"""

import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blackbox_support as bb  # noqa: E402
from blackbox_support import check, run, run_case, wait_for  # noqa: E402

REPLY_S = 20
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                  r"(ERROR|WARN|INFO|DEBUG) [a-z]+: \S")


cleanup = []


def server(binary, tmp, name, args=(), data_dir=None):
    srv = bb.Server(binary, tmp, name, list(args), data_dir=data_dir)
    cleanup.append(srv.kill)
    return srv


def lines_matching(srv, pattern):
    return [line for line in srv.log().splitlines()
            if re.search(pattern, line)]


def case_events(binary, fail2ban_filter, tmp):
    # A relative data dir: the log must say where it really is.
    srv = server(binary, tmp, "events",
                 ["--log-level", "debug", "--idle-timeout", "3",
                  "--login-penalty", "60", "--login-penalty-max", "60"],
                 data_dir="rel.data")
    if not check("(a) the server starts with --log-level debug",
                 srv.port is not None, *srv.log_tail()):
        return
    absolute = os.path.join(tmp, "rel.data")
    start = wait_for(lambda: lines_matching(srv, r"smsp-actors started in"))
    check("(a) the start line names the absolute data dir, created, with "
          "its counts",
          start and f"data dir {absolute} created (0 account(s), 0 mailbox "
          "message(s), 0 on the IMQ)" in start[0], *srv.log_tail())

    c = bb.Client(srv.port, REPLY_S, text=True)
    cookie = c.ask("REGISTER alice pw-alice")
    check("(b) REGISTER answers OK", cookie and cookie.startswith("OK "),
          repr(cookie))
    check("(b) a second REGISTER of the name is refused",
          c.ask("REGISTER alice other") == "KO user exists")
    for _ in range(3):
        c.ask("LOGIN alice wrong")
    refused = c.ask("LOGIN alice pw-alice")
    check("(b) during the 60 s penalty even the right password is refused",
          refused == "KO wrong username or password", repr(refused))
    # Control bytes in a name reach the log escaped (no log injection).
    c.ask("LOGIN ev\x1bil\x07 wrong")
    cookie = cookie[3:] if cookie else ""
    c.ask(f"MESSAGE first {cookie}")
    c.ask(f"STORE alice {cookie}")
    c.ask(f"MESSAGE second {cookie}")
    c.close()

    port_re = r"127\.0\.0\.1:\d+"
    closed = wait_for(lambda: lines_matching(
        srv, r" DEBUG conn: " + port_re + r" closed by the client$"))
    check("(c) debug: the connection's close by its client is logged",
          closed, *srv.log_tail())
    check("(c) debug: its opening too",
          lines_matching(srv, r" DEBUG conn: " + port_re + r" open$"),
          *srv.log_tail())
    check("(b) REGISTER is logged with the user and the address",
          lines_matching(srv, r" INFO auth: REGISTER: user=alice "
                              r"addr=127\.0\.0\.1$"), *srv.log_tail())
    check("(b) the refused REGISTER with its reason",
          lines_matching(srv, r" INFO auth: REGISTER refused: user=alice "
                              r"addr=127\.0\.0\.1 reason=\"user exists\"$"),
          *srv.log_tail())
    failed = lines_matching(srv, r" INFO auth: LOGIN failed: user=alice ")
    counts = [re.search(r"failures=(\d+) penalty=(\d+)ms", line)
              for line in failed]
    check("(b) each failed LOGIN: user, address, failures 1, 2, 3, and a "
          "penalty from the third (free failures: 3)",
          len(failed) == 3 and all(counts)
          and [int(m.group(1)) for m in counts] == [1, 2, 3]
          and [int(m.group(2)) > 0 for m in counts] == [False, False, True]
          and all("addr=127.0.0.1 " in line for line in failed)
          and failed[2].endswith("key=user+address"), *failed)
    check("(b) the penalty's start is logged, with its length",
          lines_matching(srv, r" INFO auth: penalty started: user=alice "
                              r"addr=127\.0\.0\.1 for \d+ms "
                              r"key=user\+address$"), *srv.log_tail())
    refusals = lines_matching(srv, r" INFO auth: LOGIN refused: user=alice "
                                   r"addr=127\.0\.0\.1 penalty=[1-9]\d*ms "
                                   r"key=user\+address$")
    check("(b) the LOGIN refused during the penalty, with the time left",
          len(refusals) == 1, *srv.log_tail())
    log_bytes = srv.log_bytes()
    check("(b) a name with control bytes is escaped in the log",
          b"user=ev\\x1bil\\x07 addr=127.0.0.1" in log_bytes
          and not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", log_bytes),
          *srv.log_tail())

    if shutil.which("fail2ban-regex"):
        log_path = os.path.join(tmp, "events.log-copy")
        with open(log_path, "wb") as f:
            f.write(log_bytes)
        out = subprocess.run(["fail2ban-regex", log_path, fail2ban_filter],
                             capture_output=True, text=True, timeout=120)
        total = re.search(r"Failregex: (\d+) total", out.stdout)
        # 3 failures and 1 refusal for alice, 1 failure for the odd name.
        check("(b) fail2ban-regex with the shipped filter matches the 5 "
              "failed and refused LOGINs, by address",
              out.returncode == 0 and total is not None
              and int(total.group(1)) == 5, out.stdout[-1500:],
              out.stderr[-500:])
        journal_matches(fail2ban_filter, log_bytes)
    else:
        print("SKIP: fail2ban-regex not installed (.ci/setup installs it)")

    silent = bb.Client(srv.port, REPLY_S)
    eof = silent.line(timeout=bb.WAIT_S * 3) is None
    silent.close()
    idle = wait_for(lambda: lines_matching(
        srv, r" INFO conn: " + port_re + r" closed: idle for 3 s "
             r"\(--idle-timeout\)$"))
    check("(c) info: an idle connection closed by the server", eof and idle,
          *srv.log_tail())

    status = srv.stop()
    log = srv.log()
    check("(a) SIGTERM: exit 0, 'stopping on SIGTERM', then 'stopped "
          "cleanly' as the last line",
          status == 0 and " INFO server: stopping on SIGTERM" in log
          and log.splitlines()[-1].endswith(
              "INFO server: stopped cleanly: every acknowledged write is "
              "committed"), f"status {status}", *srv.log_tail())
    bad = [line for line in log.splitlines() if not LINE.match(line)]
    check("(a) every line is '<UTC time> <LEVEL> <component>: <text>'",
          not bad and log, *bad[:5])

    again = server(binary, tmp, "events-again", data_dir="rel.data")
    start = wait_for(lambda: lines_matching(again, r"smsp-actors started in"))
    check("(a) after a restart: 'opened', 1 account, 1 mailbox message, 1 on "
          "the IMQ",
          start and f"data dir {absolute} opened (1 account(s), 1 mailbox "
          "message(s), 1 on the IMQ)" in start[0], *again.log_tail())
    again.stop()


def filter_setting(path, key):
    """One setting of the fail2ban filter file (a single-line value)."""
    with open(path) as f:
        for line in f:
            if line.startswith(key + " = "):
                return line[len(key) + 3:].strip().replace("%%", "%")
    return None


# Run by fail2ban's own Python (the interpreter of fail2ban-regex), which
# has its modules: feeds each line of stdin to fail2ban's Filter as the
# journal backend does, and prints the addresses found, one per line.
JOURNAL_FEED = r"""
import sys, time
from fail2ban.server.filter import Filter
f = Filter(None)
f.active = True
f.addFailRegex(sys.argv[1])
f.setDatePattern(sys.argv[2])
now = time.time()
stamp = time.strftime("%Y-%m-%d %H:%M:%S ", time.localtime(now))
for line in sys.stdin.read().splitlines():
    for t in f.processLine(("", stamp, "host1 smsp-actors[4242]: " + line),
                           now):
        print(t[1])
"""


def journal_matches(fail2ban_filter, log_bytes):
    """(b) From the journal (backend = systemd) fail2ban gets each line as
    "HOST smsp-actors[PID]: <the whole log line>" with the journal's own
    time: fed that way through fail2ban's Filter, the shipped filter matches
    the same 5 lines, at 127.0.0.1."""
    with open(shutil.which("fail2ban-regex")) as f:
        interpreter = f.readline()[2:].split()
    out = subprocess.run(
        interpreter + ["-c", JOURNAL_FEED,
                       filter_setting(fail2ban_filter, "failregex"),
                       filter_setting(fail2ban_filter, "datepattern")],
        input=log_bytes, capture_output=True, timeout=120)
    found = out.stdout.decode().split()
    check("(b) from the journal, the shipped filter matches the same 5 "
          "LOGINs, by address",
          out.returncode == 0 and found == ["127.0.0.1"] * 5, repr(found),
          out.stderr.decode()[-500:])


def case_penalty_end(binary, tmp):
    srv = server(binary, tmp, "short", ["--login-penalty", "0.2",
                                        "--login-penalty-max", "0.2"])
    if not check("(d) the server starts", srv.port is not None,
                 *srv.log_tail()):
        return
    c = bb.Client(srv.port, REPLY_S, text=True)
    c.ask("REGISTER bob pw-bob")
    for _ in range(3):
        c.ask("LOGIN bob wrong")
    c.close()
    ended = wait_for(lambda: lines_matching(
        srv, r" INFO auth: penalty ended: user=bob addr=127\.0\.0\.1$"))
    started = lines_matching(srv, r" INFO auth: penalty started: user=bob ")
    check("(d) a penalty's start and end are logged, once each",
          len(ended) == 1 and len(started) == 1, *srv.log_tail())
    srv.stop()


def case_levels(binary, tmp):
    srv = server(binary, tmp, "quiet", ["--log-level", "warn"])
    if not check("(e) the server starts with --log-level warn",
                 srv.port is not None, *srv.log_tail()):
        return
    c = bb.Client(srv.port, REPLY_S, text=True)
    c.ask("REGISTER carol pw-carol")
    c.ask("LOGIN carol wrong")
    c.close()
    status = srv.stop()
    check("(e) --log-level warn: no INFO or DEBUG line (start, REGISTER, "
          "failed LOGIN, stop)",
          status == 0 and " INFO " not in srv.log()
          and " DEBUG " not in srv.log(), *srv.log_tail())
    out = subprocess.run([binary, "--log-level", "loud", "--port", "0"],
                         capture_output=True, text=True, timeout=60,
                         cwd=tmp)
    check("(e) --log-level loud: exit 2, naming the option",
          out.returncode == 2 and "--log-level" in out.stderr,
          f"status {out.returncode}", out.stderr[-300:])


def body(args, tmp, cleanups):
    binary, fail2ban_filter = args
    cleanups.append(lambda: [kill() for kill in cleanup])
    run_case("(a)-(c)", case_events, binary, fail2ban_filter, tmp)
    run_case("(d)", case_penalty_end, binary, tmp)
    run_case("(e)", case_levels, binary, tmp)


if __name__ == "__main__":
    sys.exit(run(body, "smsp-logs.",
                 arg_names=("SERVER_BIN", "FAIL2BAN_FILTER")))
