#!/usr/bin/env python3
# Black-box test: every numeric option of the built server has a range and
# is parsed strictly (issue 8 item 3).
"""Usage: option_ranges_test.py SERVER_BIN

Reads `SERVER_BIN --help`, finds every numeric option (type N, BYTES,
SECONDS or MICROSECONDS, range printed as "(MIN to MAX)") and tries each
with -1, 0 and 2^64: -1 and 2^64 must be refused (exit status 2, stderr
naming the option, no "listening" line); 0 is refused when below the
printed minimum and otherwise starts a server, which then stops on SIGTERM
with exit status 0. A few malformed numbers (hex, a leading '+', a unit
suffix, an empty value) are refused too, and so are CAF settings out of
range or other than the three the server accepts, given on the command
line or in ./caf-application.ini. Every server started is stopped and its
directory removed, also when a check fails.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (LISTENING, WAIT_S, Server,  # noqa: E402
                              check, die_with_parent, run)

NUMERIC_TYPES = ("N", "BYTES", "SECONDS", "MICROSECONDS")
# Options the sweep must find, so that a change in the help's layout cannot
# make it silently test nothing.
EXPECTED = ("--port", "--max-unsent", "--max-unsent-total", "--hash-queue",
            "--hash-workers", "--max-connections", "--max-request",
            "--max-text", "--account-cache", "--max-mailbox",
            "--max-imq-per-user", "--idle-timeout", "--mailbox-idle",
            "--login-penalty", "--login-penalty-max", "--commit-delay",
            "--dump-interval")
TWO_TO_64 = "18446744073709551616"

def parse_help(text):
    """{option: (type, range text or None)} of every option in --help."""
    entries = []
    for line in text.splitlines():
        if re.match(r"^\s{2}-", line):
            entries.append(line)
        elif entries and line.startswith(" "):
            entries[-1] += " " + line.strip()
    options = {}
    for entry in entries:
        m = re.match(r"^\s+(?:-\w,)?(--[a-z0-9-]+)(?: ([A-Z]+)\S*)?", entry)
        if not m:
            continue
        rng = re.search(r"\(([-+0-9.e]+) to ([-+0-9.e]+)(?:, or [^)]*)?\)\s*$",
                        entry)
        options[m.group(1)] = (m.group(2), rng.groups() if rng else None)
    return options


def run_server(binary, tmp, option, argv_tail, ini=None):
    """Runs the server with `--pwhash min`, a data directory, `--port 0`
    unless `option` is --port, and `argv_tail`, in a directory whose
    caf-application.ini holds `ini` (none when None): returns (status,
    stdout, stderr) once it exits or, when it prints its listening line,
    after SIGTERM (status None if it would not stop)."""
    work = tempfile.mkdtemp(dir=tmp)
    srv = None
    try:
        if ini is not None:
            with open(os.path.join(work, "caf-application.ini"), "w") as f:
                f.write(ini)
        srv = Server(binary, work, "server", argv_tail,
                     data_dir=os.path.join(tmp, "data"),
                     ephemeral_port=option != "--port")
        status = srv.proc.returncode if srv.port is None else srv.stop()
        return status, srv.out(), srv.log()
    finally:
        if srv is not None:
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)


def check_refused(binary, tmp, option, argv_tail, shown, ini=None):
    status, out, err = run_server(binary, tmp, option, argv_tail, ini)
    first_err = err.strip().splitlines()[:2]
    check(f"{option} {shown} is refused (exit 2, stderr names {option}, "
          f"no listening)",
          status == 2 and option in err and LISTENING not in out,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr: {first_err!r}")


def check_accepted(binary, tmp, option, value, ini=None):
    argv_tail = [f"{option}={value}"] if value is not None else []
    status, out, err = run_server(binary, tmp, option, argv_tail, ini)
    shown = f"{option}={value}" if value is not None else f"ini {ini!r}"
    check(f"{shown} is accepted (listening, exit 0 on SIGTERM)",
          LISTENING in out and status == 0,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr tail: {err.strip().splitlines()[-3:]!r}")


def main(binaries, tmp, cleanup):
    binary = binaries[0]
    help_run = subprocess.run([binary, "--help"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=WAIT_S,
                              preexec_fn=die_with_parent)
    check("--help exits 0", help_run.returncode == 0,
          f"exit status: {help_run.returncode}")
    options = parse_help(help_run.stdout.decode(errors="replace"))
    numeric = {name: rng for name, (kind, rng) in options.items()
               if kind in NUMERIC_TYPES}
    missing = [name for name in EXPECTED if name not in numeric]
    check(f"--help lists the expected numeric options "
          f"({len(numeric)} found)", not missing,
          f"missing: {missing}", f"found: {sorted(numeric)}")
    for name, rng in sorted(numeric.items()):
        if not check(f"{name} prints its range in --help", rng is not None,
                     "no '(MIN to MAX)' at the end of its help text"):
            continue
        low = float(rng[0])
        high = float(rng[1])
        check(f"{name}'s range ({rng[0]} to {rng[1]}) is not empty and "
              "below 2^64", 0 <= low <= high < 2.0**64)
        # Both spellings: the value as its own argument and after '='.
        check_refused(binary, tmp, name, [name, "-1"], "-1")
        check_refused(binary, tmp, name, [f"{name}=-1"], "=-1")
        check_refused(binary, tmp, name, [name, TWO_TO_64], "2^64")
        check_refused(binary, tmp, name, [f"{name}={TWO_TO_64}"], "=2^64")
        # Just past the top (the largest 64-bit value is past every
        # top), so the range is enforced there too, not only at 2^64.
        check_refused(binary, tmp, name, [name, str(2**64 - 1)],
                      "2^64 - 1")
        if high == int(high):
            above = str(int(high) + 1)
            check_refused(binary, tmp, name, [name, above],
                          f"{above} (above {rng[1]})")
        if 0 < low:
            check_refused(binary, tmp, name, [name, "0"],
                          f"0 (below {rng[0]})")
        else:
            check_accepted(binary, tmp, name, "0")
    # Options the help should have listed as numeric but did not: still
    # swept with -1 and 2^64, so that the regression shows as itself.
    for name in missing:
        check_refused(binary, tmp, name, [name, "-1"], "-1")
        check_refused(binary, tmp, name, [name, TWO_TO_64], "2^64")
    # Malformed numbers, on options whose range holds the value they
    # would mean if read loosely (16, 10, 10000).
    for option, value in (("--hash-queue", "0x10"), ("--max-text", "0x10"),
                          ("--hash-queue", "+10"), ("--port", "+10"),
                          ("--idle-timeout", "+10"),
                          ("--hash-queue", "10k"), ("--max-unsent", "10k"),
                          ("--idle-timeout", "10s"),
                          ("--dump-interval", "1e1"),
                          ("--hash-queue", " 10"), ("--hash-queue", "10 "),
                          ("--commit-delay", "-0"),
                          ("--hash-queue", ""), ("--idle-timeout", ""),
                          ("--commit-delay", "")):
        check_refused(binary, tmp, option, [f"{option}={value}"],
                      f"={value!r}")
    check_refused(binary, tmp, "--port", ["-p", "-1"], "as -p -1")
    # Options that only make sense together: a MESSAGE of --max-text bytes
    # must fit in --max-request (65536 by default, 43 bytes of overhead).
    check_refused(binary, tmp, "--max-text", ["--max-text", "65494"],
                  "65494 (a MESSAGE would not fit --max-request)")
    check_accepted(binary, tmp, "--max-text", "65493")
    check_refused(binary, tmp, "--log-file", ["--log-file="], "'' (empty)")
    check_refused(binary, tmp, "--max-unsent", ["--max-unsent", ""],
                  "'' (its own argument)")
    check_caf_settings(binary, tmp)


def check_refused_with_ini_dir(binary, tmp):
    """A directory named caf-application.ini: CAF skips it without a word;
    the server refuses to start, naming it."""
    work = tempfile.mkdtemp(dir=tmp)
    srv = None
    try:
        os.mkdir(os.path.join(work, "caf-application.ini"))
        srv = Server(binary, work, "server", [],
                     data_dir=os.path.join(tmp, "data"))
        status = srv.proc.returncode if srv.port is None else srv.stop()
        err = srv.log()
        check("a directory named caf-application.ini is refused (exit 2, "
              "stderr names it, no listening)",
              status == 2 and "caf-application.ini is a directory" in err,
              f"exit status: {status}", f"stderr: {err.strip()[:300]!r}")
    finally:
        if srv is not None:
            srv.kill()
        shutil.rmtree(work, ignore_errors=True)


def check_caf_settings(binary, tmp):
    """CAF's settings, which CAF itself does not range-check
    (scheduler.max-threads=0 divided by zero, max-throughput=0 spun for
    ever): the three the server accepts have ranges, every other one is
    refused, from the command line and from ./caf-application.ini alike."""
    for setting, value in (("scheduler.max-threads", "0"),
                           ("scheduler.max-threads", "257"),
                           ("scheduler.max-throughput", "0"),
                           ("scheduler.policy", "foo"),
                           ("middleman.max-consecutive-reads", "50"),
                           ("work-stealing.aggressive-steal-interval", "0"),
                           ("logger.file-name", "x.log")):
        check_refused(binary, tmp, setting, [f"--{setting}={value}"],
                      f"={value} (as --{setting})")
    check_refused(binary, tmp, "scheduler.max-threads", [],
                  "=0 (in caf-application.ini)",
                  ini="[scheduler]\nmax-threads=0\n")
    check_refused(binary, tmp, "smsp.port", [], "(in caf-application.ini)",
                  ini="[smsp]\nport=5001\n")
    # Values of the wrong type, which CAF's own reader drops without a word.
    for line in ('policy="sharing"', "max-threads=3.5", "max-threads=[1,2]",
                 "max-throughput=-5"):
        setting = "scheduler." + line.split("=")[0]
        check_refused(binary, tmp, setting, [],
                      f"{line!r} (in caf-application.ini)",
                      ini=f"[scheduler]\n{line}\n")
    check_refused_with_ini_dir(binary, tmp)
    check_refused(binary, tmp, "--prot", ["--prot=5000"],
                  "(a misspelt option, not a CAF setting)")
    for setting, value in (("scheduler.max-threads", "1"),
                           ("scheduler.max-threads", "256"),
                           ("scheduler.max-throughput", "1"),
                           ("scheduler.policy", "sharing")):
        check_accepted(binary, tmp, f"--{setting}", value)
    check_accepted(binary, tmp, "scheduler.max-threads", None,
                   ini="[scheduler]\nmax-threads=1\n")


if __name__ == "__main__":
    sys.exit(run(main, "smsp-options."))
