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
suffix, an empty value) are refused too. Every server started is stopped
and its directory removed, also when a check fails.
"""

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

# Bounds on waiting for a process: a hang fails the test, a slow machine
# does not.
WAIT_S = 30
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
LISTENING = "smsp-actors listening on "

passed = 0
failed = 0
children = []


def check(name, ok, *details):
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


def die_with_parent():
    """Run in the child: the kernel kills it if this test dies (a ctest
    timeout), so no server outlives the test."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


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


def run_server(binary, args, tmp):
    """Runs the server with `args`: returns (status, stdout, stderr) once it
    exits or, when it prints its listening line, after SIGTERM (status None
    if it would not stop)."""
    work = tempfile.mkdtemp(dir=tmp)
    out_path = os.path.join(work, "out")
    err_path = os.path.join(work, "err")
    try:
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [binary] + args, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, cwd=work, preexec_fn=die_with_parent)
        children.append(proc)
        deadline = time.monotonic() + WAIT_S
        status = None
        while time.monotonic() < deadline:
            status = proc.poll()
            if status is not None:
                break
            with open(out_path, "rb") as f:
                if LISTENING.encode() in f.read():
                    proc.send_signal(signal.SIGTERM)
                    try:
                        status = proc.wait(WAIT_S)
                    except subprocess.TimeoutExpired:
                        status = None
                    break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open(out_path, "rb") as f:
            out_text = f.read().decode(errors="replace")
        with open(err_path, "rb") as f:
            err_text = f.read().decode(errors="replace")
        return status, out_text, err_text
    finally:
        shutil.rmtree(work, ignore_errors=True)


def base_args(tmp, option):
    args = ["--pwhash", "min", "--data-dir", os.path.join(tmp, "data")]
    if option != "--port":
        args += ["--port", "0"]
    return args


def check_refused(binary, tmp, option, argv_tail, shown):
    status, out, err = run_server(binary, base_args(tmp, option) + argv_tail,
                                  tmp)
    first_err = err.strip().splitlines()[:2]
    check(f"{option} {shown} is refused (exit 2, stderr names {option}, "
          f"no listening)",
          status == 2 and option in err and LISTENING not in out,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr: {first_err!r}")


def check_accepted(binary, tmp, option, value):
    status, out, err = run_server(binary, base_args(tmp, option)
                                  + [f"{option}={value}"], tmp)
    check(f"{option}={value} is accepted (listening, exit 0 on SIGTERM)",
          LISTENING in out and status == 0,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr tail: {err.strip().splitlines()[-3:]!r}")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} SERVER_BIN", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="smsp-options.")
    try:
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
        check_refused(binary, tmp, "--max-unsent", ["--max-unsent", ""],
                      "'' (its own argument)")
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
