#!/usr/bin/env python3
# Black-box test of smsp-client: its output, its bounds, its modes and sessions.
"""Usage: client_test.py SERVER_BIN CLIENT_BIN

Starts the built server on an ephemeral port with a fresh data directory,
posts one hostile message (colour and OSC title sequences, C1 controls,
invalid UTF-8, backslashes, CR, TAB, DEL, valid UTF-8 in several scripts)
and reads it back with the built client: under a pseudo-terminal, scripted
(stdin a pipe) and interactive (libedit), with stdout to a file and to a
pipe, and with each --escape override. A fake server whose replies hold
escape sequences checks the other paths that print server bytes (refusals
on stderr and stdout, the cookie shown by whoami).

A text that ends in CR keeps it (the client sends LF, so a CR before the
reply's LF is the text's own): `\\x0d` on a terminal, the byte itself to a
file or pipe. The longest reply the default limits allow gets through, and
--max-text sets the cap. Fake servers that stream a reply without a newline,
or trickle one byte at a time, make the client fail with a message and exit
1, within bounded memory (its peak RSS) and before a hang detector: the
--timeout is a deadline for the whole reply, not for each read.

The friendlier client (issue 12 item 6): one-shot mode (`smsp-client -p P
COUNT alice`) prints the reply and exits 0 for OK/COUNTED, 1 for a refusal,
a failed login or no server, 2 for a usage error (found before connecting);
credentials from SMSP_USER/SMSP_PASSWORD, a password from stdin when it is
not a terminal, or asked for on a pseudo-terminal with echo off (which Ctrl-C
cancels, echo restored); SMSP_COOKIE used as is, a dead one reported as an
expired session. Interactive, under a pseudo-terminal: login asks for the
password without echo, Ctrl-C clears the line, Ctrl-D leaves, help
<command> explains one, the prompt shows the user. Two clients at once
append to one history file (no login or register line, mode 0600) that a
third reads back. Fake servers check that a command whose reply never comes
is sent once and reported as of unknown outcome, and that a connection
closed before a command is replaced. Across a server restart (same port,
same data) the remembered session is reported expired and forgotten: the
prompt drops the user; MESSAGE gets the original literal.
"""

import os
import pty
import re
import select
import socket
import subprocess
import sys
import termios
import threading
import time
import tty

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (WAIT_S, Client, Server, check,  # noqa: E402
                              free_port, run, run_case, wait_for)

# The posted text and what a terminal must show of it, piece by piece.
PIECES = [
    (b"colour:\x1b[31mred\x1b[0m", rb"colour:\x1b[31mred\x1b[0m"),
    (b" title:\x1b]0;pwned\x07", rb" title:\x1b]0;pwned\x07"),
    (b" c1-csi:\xc2\x9b2J c1:\xc2\x80\xc2\x85\xc2\x9f",
     rb" c1-csi:\xc2\x9b2J c1:\xc2\x80\xc2\x85\xc2\x9f"),
    (b" 8bit-csi:\x9b2J", rb" 8bit-csi:\x9b2J"),
    (b" cr:\rX tab:\tY del:\x7f bell:\x07", rb" cr:\x0dX tab:\x09Y del:\x7f bell:\x07"),
    # A literal backslash, and text that only looks like an escape.
    (b" back\\slash \\x1b", rb" back\\slash \\x1b"),
    (b" binary:\xff\xfe\x80", rb" binary:\xff\xfe\x80"),
    (b" overlong:\xc0\xaf\xe0\x80\xaf surrogate:\xed\xa0\x80",
     rb" overlong:\xc0\xaf\xe0\x80\xaf surrogate:\xed\xa0\x80"),
    (b" too-big:\xf4\x90\x80\x80 truncated:\xe2\x82 end",
     rb" too-big:\xf4\x90\x80\x80 truncated:\xe2\x82 end"),
    # Valid UTF-8 stays readable: NBSP (the first code point after C1),
    # Latin, Czech (U+011B is C4 9B: a 0x9B inside a valid sequence), Greek,
    # CJK, an emoji, and U+10FFFF, the last code point.
    (" utf8:\u00a0Grüße ěšč Ελληνικά 日本語 \U0001f4e7 \U0010ffff.".encode(),
     " utf8:\u00a0Grüße ěšč Ελληνικά 日本語 \U0001f4e7 \U0010ffff.".encode()),
]
TEXT = b"".join(raw for raw, _ in PIECES)
SHOWN = b"".join(shown for _, shown in PIECES)
UTF8_PART = PIECES[-1][0].strip()

def check_eq(name, expected, actual):
    check(name, expected == actual, f"expected: {expected!r}",
          f"actual:   {actual!r}")


def is_utf8(data):
    try:
        data.decode("utf-8", errors="strict")
        return True
    except UnicodeDecodeError:
        return False


# Sequences of the posted text that must not reach a terminal raw.
TEXT_SEQUENCES = (b"\x1b[31m", b"\x1b]0;", b"\xc2\x9b", b"\xc2\x85", b"\r",
                  b"\x07", b"\x7f")


def check_screen_safe(name, screen, sequences=TEXT_SEQUENCES):
    """None of `sequences` reaches the terminal raw, nor invalid UTF-8."""
    problems = [f"holds {seq!r}" for seq in sequences if seq in screen]
    if not is_utf8(screen):
        problems.append("is not valid UTF-8 (a raw 0x9B or other stray byte)")
    check(name, not problems, *problems, f"screen: {screen!r}")


class ListeningServer:
    """A fake server on an ephemeral port of 127.0.0.1: each connection is
    served by `_serve(conn)` on a thread of its own until stop()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def stop(self):
        self.sock.close()


class FakeServer(ListeningServer):
    """Answers LOGIN with a cookie holding an OSC sequence and everything
    else with a refusal holding escape sequences: what a hostile or broken
    server could send."""

    COOKIE = b"c00k1e\x1b]0;fake\x07"
    REFUSAL = b"KO refused\x1b[2J\xc2\x9b1m\xff"

    def _serve(self, conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                reply = (b"OK " + self.COOKIE if line.startswith(b"LOGIN ")
                         else self.REFUSAL)
                conn.sendall(reply + b"\n")


class StreamingServer(ListeningServer):
    """Answers the first request of each connection with a reply that never
    ends: `chunk` bytes without a newline every `pause_s` seconds, as long as
    the client takes them, up to `limit` bytes (a bound on the test's own
    work, far beyond what a client may hold). `sent` counts the bytes of the
    latest connection."""

    def __init__(self, chunk, pause_s, limit):
        self.chunk = chunk
        self.pause_s = pause_s
        self.limit = limit
        self.sent = 0
        self.stopping = threading.Event()
        super().__init__()

    def _serve(self, conn):
        self.sent = 0
        with conn:
            request = b""
            while b"\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            # Ends when the client closes (EPIPE, ECONNRESET) or at `limit`.
            while self.sent < self.limit and not self.stopping.is_set():
                try:
                    conn.sendall(self.chunk)
                except OSError:
                    return
                self.sent += len(self.chunk)
                if self.pause_s:
                    self.stopping.wait(self.pause_s)
            # At `limit`: keep the connection open, as a stuck server would.
            self.stopping.wait()

    def stop(self):
        self.stopping.set()
        super().stop()


def run_measured(client, args, script, env, tmp):
    """Scripted mode with stdout and stderr to files, the client killed if it
    has not exited after WAIT_S (a hang detector). Returns (status or None
    if it was killed, stdout, stderr, its peak RSS in KiB, seconds)."""
    out_path = os.path.join(tmp, "measured.out")
    err_path = os.path.join(tmp, "measured.err")
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([client] + args, stdin=subprocess.PIPE,
                                stdout=out, stderr=err, env=env)
    try:
        proc.stdin.write(script)
        proc.stdin.close()
    except OSError:
        pass  # it exited already: its status tells
    killed = False
    while True:
        # wait4 gives this child's own peak RSS, not the maximum over all
        # children getrusage(RUSAGE_CHILDREN) would give.
        pid, wstatus, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if not killed and time.monotonic() - start > WAIT_S:
            proc.kill()
            killed = True
        time.sleep(0.05)
    seconds = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(wstatus)  # Popen: reaped
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        return (None if killed else proc.returncode, out.read(), err.read(),
                usage.ru_maxrss, seconds)


def read_until_eof(fd, proc):
    """Everything the pty master yields until the client has exited and the
    slave side is closed (Linux then reports EIO)."""
    data = b""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return data


def run_on_pty(client, args, script, env):
    """Scripted mode (stdin a pipe) with stdout and stderr on one raw
    pseudo-terminal: returns (status, screen bytes, exactly as written)."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no CRLF translation: the bytes as the client wrote
    proc = subprocess.Popen([client] + args, stdin=subprocess.PIPE,
                            stdout=slave, stderr=slave, env=env)
    os.close(slave)
    proc.stdin.write(script)
    proc.stdin.close()
    screen = read_until_eof(master, proc)
    os.close(master)
    return proc.returncode, screen


def run_to_files(client, args, script, env, tmp):
    """Scripted mode with stdout and stderr to regular files."""
    out_path = os.path.join(tmp, "client.out")
    err_path = os.path.join(tmp, "client.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.run([client] + args, input=script, stdout=out,
                              stderr=err, env=env, timeout=WAIT_S)
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        return proc.returncode, out.read(), err.read()


def run_to_pipes(client, args, script, env):
    """Scripted mode with stdout and stderr to pipes: (status, out, err)."""
    proc = subprocess.run([client] + args, input=script,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=WAIT_S)
    return proc.returncode, proc.stdout, proc.stderr


def line_editor_reading(fd):
    """Whether the terminal of pty master `fd` is in the line editor's own
    mode (neither canonical nor echoing): only then does the editor, not the
    kernel, echo what is typed."""
    lflag = termios.tcgetattr(fd)[3]
    return not lflag & (termios.ICANON | termios.ECHO)


class PtyClient:
    """The client in interactive mode: stdin, stdout and stderr on one
    pseudo-terminal in its default (cooked) settings, as a reader's. Each
    line is typed once the client's prompt is on the screen and libedit
    reads the terminal in its own mode; two of them can be driven in turn.
    `screen` holds what it wrote so far."""

    def __init__(self, client, args, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([client] + args, stdin=slave,
                                     stdout=slave, stderr=slave, env=env,
                                     # Its own session: no job-control
                                     # signal or terminal change reaches the
                                     # test runner.
                                     start_new_session=True)
        os.close(slave)
        self.screen = b""
        self.mark = 0
        self.deadline = time.monotonic() + WAIT_S * TIME_FACTOR

    def read_until_prompt(self):
        """Reads until a prompt follows a line break after what the previous
        line typed brought, and the line editor has switched the terminal to
        its own mode. libedit writes the prompt while the terminal is still
        cooked: a line typed then is echoed by the kernel after the prompt
        and once more by libedit on the next line, where the command's
        output belongs."""
        while time.monotonic() < self.deadline:
            prompted = (self.screen.endswith(b"> ")
                        and b"\n" in self.screen[self.mark:])
            if prompted and line_editor_reading(self.master):
                return True
            # Once prompted, only the terminal's mode is awaited: no output
            # comes before the line is typed, so poll it briefly.
            if not self.read_some(0.005 if prompted else 0.2):
                return False
        return False

    def read_some(self, wait_s):
        """Adds what the client wrote within `wait_s`; False at its end."""
        ready, _, _ = select.select([self.master], [], [], wait_s)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return False
            if not chunk:
                return False
            self.screen += chunk
        return True

    def read_until_secret_prompt(self, prompt):
        """Reads until the screen ends with `prompt` and the terminal's echo
        is off (the client writes the prompt first): False if it does
        not."""
        while time.monotonic() < self.deadline:
            if self.screen.endswith(prompt) and echo_off(self.master):
                return True
            if not self.read_some(0.05):
                return False
        return False

    def type(self, data):
        """Waits for the prompt, then types `data` (bytes, as keys): False
        when no prompt came."""
        if not self.read_until_prompt():
            return False
        self.mark = len(self.screen)
        os.write(self.master, data)
        return True

    def finish(self):
        """Reads until it has exited: (status, screen with CRLF as LF)."""
        self.screen += read_until_eof(self.master, self.proc)
        os.close(self.master)
        return self.proc.returncode, self.screen.replace(b"\r\n", b"\n")


def run_interactive(client, args, lines, env):
    """Interactive mode (see PtyClient): each of `lines` typed after the
    prompt that follows the previous one's output, and ended with Enter; a
    callable instead of a line is called (e.g. to restart the server).
    Returns (status, screen with CRLF as LF)."""
    session = PtyClient(client, args, env)
    for line in lines:
        if callable(line):
            if not session.read_until_prompt():
                break
            line()
        elif not session.type(line + b"\n"):
            break
    return session.finish()


def main(binaries, tmp, cleanup):
    server_bin, client = binaries
    # HOME: the interactive client keeps its history there. The caller's
    # SMSP_USER, SMSP_PASSWORD and SMSP_COOKIE would change what it does.
    env = dict(without_credentials(os.environ), HOME=tmp, TERM="xterm")
    server = Server(server_bin, tmp, "server",
                    data_dir=os.path.join(tmp, "data"), start_s=20)
    cleanup.append(lambda: server.stop(10))
    fake = FakeServer()
    cleanup.append(fake.stop)
    # As fast as the client reads, up to 1 GiB; one byte every 0.25 s.
    flood = StreamingServer(b"A" * 65536, 0, 1 << 30)
    cleanup.append(flood.stop)
    trickle = StreamingServer(b"A", 0.25, 1 << 30)
    cleanup.append(trickle.stop)
    if server.port is None:
        check("server starts", False,
              "no 'smsp-actors listening on <host>:<port>' within 20 s",
              f"stdout: {server.out()[-2000:]!r}", *server.log_tail(20))
        return
    details = lambda: server.log_tail(20)  # noqa: E731
    run_case("escapes", run_checks, client, server.port, fake.port, env, tmp,
             details=details)
    run_case("text ending in CR", run_cr_checks, client, server.port, env,
             tmp, details=details)
    run_case("reply caps", run_cap_checks, client, server.port, env, tmp,
             details=details)
    run_case("endless replies", run_endless_checks, client, flood, trickle,
             env, tmp)
    run_case("reconnect after the idle timeout", run_idle_reconnect_checks,
             client, server_bin, env, tmp, cleanup)
    run_case("one-shot mode", run_one_shot_checks, client, server.port, env,
             tmp, details=details)
    run_case("password prompt", run_password_prompt_checks, client,
             server.port, env, details=details)
    run_case("register prompt", run_register_prompt_checks, client,
             server.port, env, details=details)
    run_case("line editing", run_line_editing_checks, client, server.port,
             env, tmp, details=details)
    run_case("history", run_history_checks, client, server.port, env, tmp,
             details=details)
    run_case("never sent twice", run_resend_checks, client, env, tmp)
    run_case("expired session", run_expired_session_checks, client,
             server_bin, env, tmp, cleanup)


def run_checks(client, port, fake_port, env, tmp):
    to_server = ["--port", str(port), "--timeout", "10"]
    get_script = b"login reader pw-reader\nget\n"
    got = b"logged in as reader\n"

    status, out, err = run_to_files(
        client, to_server,
        b"register reader pw-reader\nsend reader " + TEXT + b"\n", env, tmp)
    check_eq("the hostile text is posted", (0, b"registered and logged in as "
             b"reader\nsent to reader\n", b""), (status, out, err))

    # (a) A terminal gets the text escaped: scripted, then interactive.
    status, screen = run_on_pty(client, to_server, get_script, env)
    check_eq("pty, stdin a pipe: get shows the text escaped",
             (0, got + SHOWN + b"\n"), (status, screen))
    check("pty, stdin a pipe: not one ESC byte reaches the terminal",
          b"\x1b" not in screen, f"screen: {screen!r}")
    check_screen_safe("pty, stdin a pipe: no control sequence, valid UTF-8",
                      screen)
    check("pty, stdin a pipe: the UTF-8 stays readable", UTF8_PART in screen,
          f"screen: {screen!r}")

    status, screen = run_interactive(
        client, to_server, [b"login reader pw-reader", b"get", b"quit"], env)
    lines = screen.split(b"\n")
    prompt_get = [i for i, line in enumerate(lines) if line.endswith(b"> get")]
    shown = lines[prompt_get[0] + 1] if prompt_get else None
    check_eq("interactive (libedit): get shows the text escaped",
             (0, SHOWN), (status, shown))
    check_screen_safe("interactive (libedit): no control sequence of the "
                      "text, valid UTF-8", screen)
    check("interactive (libedit): the UTF-8 stays readable",
          UTF8_PART in screen, f"screen: {screen!r}")

    # (b) A file or a pipe gets exactly the posted bytes.
    status, out, err = run_to_files(client, to_server, get_script, env, tmp)
    check_eq("stdout to a file: get writes the posted bytes",
             (0, got + TEXT + b"\n", b""), (status, out, err))
    status, out, _ = run_to_files(client, to_server,
                                  b"login reader pw-reader\nwhoami\n", env,
                                  tmp)
    cookie = out.split(b"\n")[1].split(b" ")[1] if status == 0 else b"none"
    raw_script = b"raw GETMSG reader " + cookie + b"\n"
    check_eq("stdout to a pipe: raw passes the reply through byte for byte",
             (0, b"OK " + TEXT + b"\n", b""),
             run_to_pipes(client, to_server, raw_script, env))
    status, screen = run_on_pty(client, to_server, raw_script, env)
    check_eq("pty: raw shows the reply escaped", (0, b"OK " + SHOWN + b"\n"),
             (status, screen))

    # (c) The overrides.
    status, out, _ = run_to_files(client, to_server + ["--escape=always"],
                                  get_script, env, tmp)
    check_eq("--escape=always escapes into a file",
             (0, got + SHOWN + b"\n"), (status, out))
    status, screen = run_on_pty(client, to_server + ["--escape", "never"],
                                get_script, env)
    check_eq("--escape never gives a terminal the posted bytes",
             (0, got + TEXT + b"\n"), (status, screen))
    status, screen = run_on_pty(client, to_server + ["--escape=auto"],
                                get_script, env)
    check_eq("--escape=auto is the default: a terminal gets it escaped",
             (0, got + SHOWN + b"\n"), (status, screen))
    status, out, err = run_to_files(client, to_server + ["--escape=auto"],
                                    get_script, env, tmp)
    check_eq("--escape=auto: a file gets the posted bytes",
             (0, got + TEXT + b"\n"), (status, out))
    status, out, err = run_to_files(client, to_server + ["--escape=sometimes"],
                                    get_script, env, tmp)
    check("--escape=sometimes is refused, naming the option",
          status != 0 and out == b"" and b"--escape" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")
    proc = subprocess.run([client, "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, timeout=WAIT_S)
    check("--help documents --escape and its values",
          proc.returncode == 0 and all(
              word in proc.stdout for word in
              (b"--escape", b"auto", b"always", b"never", b"terminal")),
          f"status {proc.returncode}, output {proc.stdout!r}")

    # Other server bytes the client prints: the cookie (whoami) and a
    # refusal (stderr in scripted mode), from a server that sends escapes.
    to_fake = ["--port", str(fake_port), "--timeout", "10"]
    fake_script = b"login eve pw\nwhoami\ncount\n"
    cookie_shown = rb"c00k1e\x1b]0;fake\x07"
    refusal_shown = rb"KO refused\x1b[2J\xc2\x9b1m\xff"
    status, screen = run_on_pty(client, to_fake, fake_script, env)
    check_eq("pty: a hostile cookie and refusal are shown escaped",
             (1, b"logged in as eve\neve " + cookie_shown
              + b"\nsmsp-client: line 3 (count): " + refusal_shown + b"\n"),
             (status, screen))
    status, out, err = run_to_files(client, to_fake, fake_script, env, tmp)
    check_eq("files: the cookie and the refusal as the server sent them",
             (1, b"logged in as eve\neve " + FakeServer.COOKIE + b"\n",
              b"smsp-client: line 3 (count): " + FakeServer.REFUSAL + b"\n"),
             (status, out, err))
    status, screen = run_interactive(client, to_fake,
                                     [b"login eve pw", b"count", b"quit"], env)
    check("interactive (libedit): a refusal is shown escaped",
          status == 0 and b"\n" + refusal_shown + b"\n" in screen,
          f"status {status}, screen {screen!r}")
    check_screen_safe("interactive (libedit): no sequence of the refusal",
                      screen, (b"\x1b[2J", b"\xc2\x9b"))



def post(port, user, text):
    """Registers `user` and delivers `text` to its mailbox over a plain LF
    connection (the bytes exactly as given); returns the session cookie."""
    poster = Client(port, WAIT_S)
    try:
        reply = poster.ask(b"REGISTER " + user + b" pw-" + user)
        check(f"{user.decode()} registers", reply and reply.startswith(b"OK "),
              f"reply: {reply!r}")
        cookie = reply[3:] if reply else b"none"
        replies = [poster.ask(b"MESSAGE " + text + b" " + cookie),
                   poster.ask(b"STORE " + user + b" " + cookie)]
        check_eq(f"{user.decode()}'s text is posted and stored",
                 [b"OK", b"OK"], replies)
        return cookie
    finally:
        poster.close()


def run_cr_checks(client, port, env, tmp):
    """A text that ends in CR (F6): the CR before the reply's LF is the
    text's, not part of the terminator, since the client sends LF."""
    text = b"ends in CR\r"
    cookie = post(port, b"carriage", text)
    peek = Client(port, WAIT_S)
    reply = peek.ask(b"GETMSG carriage " + cookie)
    peek.close()
    check_eq("the server keeps the CR at the end of the text", b"OK " + text,
             reply)

    to_server = ["--port", str(port), "--timeout", "10"]
    raw_script = b"raw GETMSG carriage " + cookie + b"\n"
    check_eq("stdout to a pipe: raw keeps a trailing CR",
             (0, b"OK " + text + b"\n", b""),
             run_to_pipes(client, to_server, raw_script, env))
    status, screen = run_on_pty(client, to_server, raw_script, env)
    check_eq("pty: raw shows a trailing CR as \\x0d",
             (0, b"OK ends in CR\\x0d\n"), (status, screen))

    get_script = b"login carriage pw-carriage\nget\n"
    got = b"logged in as carriage\n"
    status, out, err = run_to_files(client, to_server, get_script, env, tmp)
    check_eq("stdout to a file: get writes a trailing CR byte for byte",
             (0, got + text + b"\n", b""), (status, out, err))
    check_eq("stdout to a pipe: get writes a trailing CR byte for byte",
             (0, got + text + b"\n", b""),
             run_to_pipes(client, to_server, get_script, env))
    status, screen = run_on_pty(client, to_server, get_script, env)
    check_eq("pty: get shows a trailing CR as \\x0d",
             (0, got + b"ends in CR\\x0d\n"), (status, screen))
    status, out, _ = run_to_files(client, to_server + ["--escape", "always"],
                                  get_script, env, tmp)
    check_eq("--escape always: get shows a trailing CR as \\x0d",
             (0, got + b"ends in CR\\x0d\n"), (status, out))


def run_cap_checks(client, port, env, tmp):
    """The longest reply of the default limits (a 16 KiB text) gets through;
    --max-text sets the cap, and a reply beyond it fails the command."""
    to_server = ["--port", str(port), "--timeout", "10"]
    longest = bytes(ord("a") + i % 26 for i in range(16384))
    post(port, b"longest", longest)
    status, out, err = run_to_files(
        client, to_server, b"login longest pw-longest\nget\n", env, tmp)
    check_eq("the default accepts a GETMSG of a 16384-byte text",
             (0, b"logged in as longest\n" + longest + b"\n", b""),
             (status, out, err))

    hundred = b"h" * 100
    post(port, b"hundred", hundred)
    script = b"login hundred pw-hundred\nget\n"
    status, out, err = run_to_files(client, to_server + ["--max-text", "100"],
                                    script, env, tmp)
    check_eq("--max-text 100 accepts a 100-byte text",
             (0, b"logged in as hundred\n" + hundred + b"\n", b""),
             (status, out, err))
    status, out, err = run_to_files(client, to_server + ["--max-text", "50"],
                                    script, env, tmp)
    check("--max-text 50 refuses a 100-byte text: exit 1, a message naming "
          "the cap and --max-text",
          status == 1 and out == b"logged in as hundred\n"
          and err.startswith(b"smsp-client: line 2 (get): connection error: "
                             b"the server's reply exceeds 64 bytes")
          and b"--max-text" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")
    for value in ("0", "1073741825", "lots"):
        status, out, err = run_to_files(
            client, to_server + ["--max-text", value], script, env, tmp)
        check(f"--max-text {value} is refused, naming the option",
              status != 0 and out == b"" and b"--max-text" in err,
              f"status {status}, stdout {out!r}, stderr {err!r}")
    for value in ("nan", "inf", "0"):
        status, out, err = run_to_files(
            client, ["--port", str(port), "--timeout", value], script, env,
            tmp)
        check(f"--timeout {value} is refused, naming the option",
              status != 0 and out == b"" and b"--timeout" in err,
              f"status {status}, stdout {out!r}, stderr {err!r}")
    # A line ending in CR after its CRLF's CR was taken off: sent with LF
    # it would be read as CRLF-terminated, the CR lost (and the cookie of a
    # LOGIN would have come back with a CR in it).
    status, out, err = run_to_files(
        client, to_server, b"login hundred pw-hundred\r\r\nget\n", env, tmp)
    check("a line ending in two CRs is refused: exit 1, a message, nothing "
          "sent", status == 1 and out == b""
          and b"line 1 (login): the line ends in two CRs" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")
    proc = subprocess.run([client, "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, timeout=WAIT_S)
    check("--help documents --max-text and --timeout as a deadline",
          proc.returncode == 0 and b"--max-text" in proc.stdout
          and b"whole reply" in proc.stdout,
          f"status {proc.returncode}, output {proc.stdout!r}")


# A generous bound on the client's peak RSS: it holds one reply of at most
# 16 KiB plus one 64 KiB read, about 5 MiB in all in a plain build (the
# figure wait4 reports also counts this Python's image in the child before
# its exec, about 14 MiB), leaving room for a sanitized build. An unbounded
# buffer reached 148 MB within 6 s against the flood.
PEAK_RSS_KIB = 96 * 1024


def closed_by_server(port):
    """Whether a TCP connection to 127.0.0.1:`port` waits in CLOSE_WAIT: the
    server closed it and the client has not yet (read from the kernel's
    table, so that no log line's wording matters)."""
    try:
        with open("/proc/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        remote, state = fields[2], fields[3]
        if int(remote.split(":")[1], 16) == port and state == "08":
            return True
    return False


def run_idle_reconnect_checks(client, server_bin, env, tmp, cleanup):
    """A connection the server closed for its --idle-timeout is replaced
    before the next command is sent: the command is not lost, and the
    session (a cookie) goes on. The script's second line is written only
    once the kernel shows the connection closed by the server, so nothing
    races a clock."""
    server = Server(server_bin, tmp, "idler", ["--idle-timeout", "0.5"],
                    start_s=20)
    cleanup.append(lambda: server.stop(10))
    check("a server with --idle-timeout 0.5 starts", server.port is not None,
          *server.log_tail(10))
    if server.port is None:
        return
    out_path = os.path.join(tmp, "idler-client.out")
    err_path = os.path.join(tmp, "idler-client.err")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([client, "--port", str(server.port)],
                                stdin=subprocess.PIPE, stdout=out, stderr=err,
                                env=env)
    cleanup.append(proc.kill)
    proc.stdin.write(b"register idler pw-idler\n")
    proc.stdin.flush()
    closed = wait_for(lambda: closed_by_server(server.port), HANG_S)
    check("the server closes the client's idle connection", closed,
          *server.log_tail(10))
    proc.stdin.write(b"count\nwhoami\n")
    proc.stdin.close()
    status = proc.wait(timeout=WAIT_S)
    with open(out_path, "rb") as out, open(err_path, "rb") as err:
        got, errors = out.read(), err.read()
    check("the next command reconnects and is answered in the same session "
          "(exit 0, count 0, still idler)",
          status == 0 and got.startswith(b"registered and logged in as idler\n"
                                         b"0\nidler ") and errors == b"",
          f"status {status}", f"stdout {got!r}", f"stderr {errors!r}")
    server.stop(10)


def run_endless_checks(client, flood, trickle, env, tmp):
    """A reply that never ends (F7): streamed without a newline, the client
    gives up at the cap in bounded memory; trickled a byte at a time, at the
    deadline of --timeout for the whole reply."""
    status, out, err, rss_kib, seconds = run_measured(
        client, ["--port", str(flood.port), "--timeout", "10"], b"dump\n",
        env, tmp)
    check("a server streaming a reply without a newline: exit 1 with a "
          "message naming the cap, no hang",
          status == 1 and out == b""
          and err.startswith(b"smsp-client: line 1 (dump): connection error: "
                             b"the server's reply exceeds 16389 bytes")
          and b"--max-text" in err,
          f"status {status} after {seconds:.1f} s (None: killed after "
          f"{WAIT_S} s)", f"stdout {out!r}", f"stderr {err[:500]!r}",
          f"the fake server sent {flood.sent} bytes")
    check(f"... the client's peak RSS stays under {PEAK_RSS_KIB} KiB",
          0 < rss_kib < PEAK_RSS_KIB,
          f"peak RSS {rss_kib} KiB; the fake server sent {flood.sent} bytes")

    # One byte every 0.25 s: each wait for more bytes is far shorter than
    # the 3 s timeout, so only a deadline for the whole reply ends it; the
    # hang detector allows 10 times that.
    status, out, err, rss_kib, seconds = run_measured(
        client, ["--port", str(trickle.port), "--timeout", "3"], b"dump\n",
        env, tmp)
    check("a server trickling a reply byte by byte: exit 1 at the --timeout "
          "deadline, with a message",
          status == 1 and out == b""
          and err.startswith(b"smsp-client: line 1 (dump): connection error: "
                             b"no complete reply from the server within "
                             b"3000 ms"),
          f"status {status} after {seconds:.1f} s (None: killed after "
          f"{WAIT_S} s)", f"stdout {out!r}", f"stderr {err[:500]!r}",
          f"the fake server sent {trickle.sent} bytes")


# -- issue 12 item 6: one-shot mode, credentials, reconnect, expired sessions,
# history, Ctrl-C, help -------------------------------------------------------

# The sanitized builds are slower (tests/sanitize.sh sets the factor): the
# client's reply deadline and the hang detectors grow with it.
TIME_FACTOR = max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
HANG_S = WAIT_S * TIME_FACTOR
START_S = 20 * TIME_FACTOR
REPLY_TIMEOUT = str(10 * TIME_FACTOR)

def one_shot(client, args, env, stdin=b""):
    """One-shot mode, stdin a pipe holding `stdin`: (status, out, err)."""
    proc = subprocess.run([client] + args, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=HANG_S)
    return proc.returncode, proc.stdout, proc.stderr


def without_credentials(env):
    return {k: v for k, v in env.items()
            if k not in ("SMSP_USER", "SMSP_PASSWORD", "SMSP_COOKIE")}


def is_cookie_reply(out):
    return re.fullmatch(rb"OK [0-9a-f]{32,}\n", out) is not None


def run_one_shot_checks(client, port, env, tmp):
    """`smsp-client [options] COMMAND ARGS...`: one request, the reply
    printed, exit 0 for OK/COUNTED, 1 for a refusal or no connection, 2 for
    a usage error; the session from SMSP_COOKIE, or a login with SMSP_USER
    and SMSP_PASSWORD, or a password read from stdin."""
    base = without_credentials(env)
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    status, out, err = one_shot(client, p + ["REGISTER", "shot", "pw-shot"],
                                base)
    check("one-shot REGISTER (-p): exit 0, prints OK <cookie>",
          status == 0 and is_cookie_reply(out) and err == b"",
          f"status {status}, stdout {out!r}, stderr {err!r}")
    creds = dict(base, SMSP_USER="shot", SMSP_PASSWORD="pw-shot")
    check_eq("one-shot MESSAGE with SMSP_USER/SMSP_PASSWORD: OK, inner "
             "spacing kept", (0, b"OK\n", b""),
             one_shot(client, p + ["MESSAGE", "hello  one shot"], creds))
    check_eq("one-shot STORE: OK", (0, b"OK\n", b""),
             one_shot(client, p + ["store", "shot"], creds))
    check_eq("one-shot COUNT: COUNTED 1, exit 0", (0, b"COUNTED 1\n", b""),
             one_shot(client, p + ["COUNT", "shot"], creds))
    check_eq("one-shot GETMSG prints the reply as it came",
             (0, b"OK hello  one shot\n", b""),
             one_shot(client, p + ["GETMSG", "shot"], creds))
    status, out, err = one_shot(client, p + ["COUNT", "nobody"], creds)
    check("one-shot COUNT of another mailbox: exit 1, the KO on stderr",
          status == 1 and out == b""
          and err == b"smsp-client: KO not your mailbox\n",
          f"status {status}, stdout {out!r}, stderr {err!r}")
    status, out, err = one_shot(client, p + ["COUNT", "shot"],
                                dict(creds, SMSP_PASSWORD="wrong-pw"))
    check("one-shot with a wrong SMSP_PASSWORD: exit 1, the login's reply",
          status == 1 and out == b""
          and b"LOGIN as shot: KO wrong username or password" in err
          and b"wrong-pw" not in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")

    # No SMSP_PASSWORD and stdin not a terminal: one line of stdin, never
    # echoed; without SMSP_USER, COUNT logs in as the user it names.
    status, out, err = one_shot(client, p + ["DELMSG"],
                                dict(base, SMSP_USER="shot"), b"pw-shot\n")
    check_eq("one-shot DELMSG: the password from stdin (not a terminal), "
             "the mailbox SMSP_USER's", (0, b"OK\n", b""), (status, out, err))
    status, out, err = one_shot(client, p + ["COUNT", "shot"], base,
                                b"pw-shot\n")
    check_eq("one-shot COUNT without SMSP_USER logs in as the user named",
             (0, b"COUNTED 0\n", b""), (status, out, err))
    status, out, err = one_shot(client, p + ["COUNT", "shot"], base, b"")
    check("one-shot COUNT with no password anywhere: exit 1, says so",
          status == 1 and out == b"" and b"no password given" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")

    # SMSP_COOKIE: a session from elsewhere, used as is (not logged out).
    status, out, err = one_shot(client, p + ["LOGIN", "shot"], base,
                                b"pw-shot\n")
    check("one-shot LOGIN, the password from stdin: prints OK <cookie>",
          status == 0 and is_cookie_reply(out),
          f"status {status}, stdout {out!r}, stderr {err!r}")
    cookie = out.split()[1].decode() if status == 0 else "none"
    with_cookie = dict(base, SMSP_COOKIE=cookie)
    results = [one_shot(client, p + ["COUNT", "shot"], with_cookie)
               for _ in range(2)]
    check_eq("one-shot COUNT with SMSP_COOKIE, twice: the session stays",
             [(0, b"COUNTED 0\n", b"")] * 2, results)
    check_eq("one-shot LOGOUT with SMSP_COOKIE: OK", (0, b"OK\n", b""),
             one_shot(client, p + ["LOGOUT"], with_cookie))
    status, out, err = one_shot(client, p + ["COUNT", "shot"], with_cookie)
    check("one-shot COUNT with a dead SMSP_COOKIE: exit 1, 'KO not logged "
          "in', the session expired",
          status == 1 and out == b""
          and err.startswith(b"smsp-client: KO not logged in (the session")
          and b"expired" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")
    status, out, err = one_shot(client, p + ["MESSAGE", "hi"], with_cookie)
    check("one-shot MESSAGE with a dead SMSP_COOKIE: exit 1, 'You should "
          "log in first.'",
          status == 1 and out == b""
          and err.startswith(b"smsp-client: You should log in first. (")
          and b"expired" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")

    # Usage errors: exit 2, before any connection or prompt.
    dead = ["-p", str(free_port())]
    for args, label, says in (
            (["COUNT", "a", "b"], "too many arguments", b"usage: count"),
            (["STORE"], "too few arguments", b"usage: store <user>"),
            (["FROB"], "an unknown command", b"'FROB' is not a command"),
            (["whoami"], "an interactive-only command", b"'whoami'"),
            (["MESSAGE", "two\nlines"], "a line break",
             b"holds a line break")):
        status, out, err = one_shot(client, dead + args, creds)
        check(f"one-shot with {label}: usage error, exit 2, no connection "
              "tried", status == 2 and out == b"" and says in err
              and b"connect" not in err,
              f"status {status}, stdout {out!r}, stderr {err!r}")
    status, out, err = one_shot(client, dead + ["COUNT", "shot"], creds)
    check("one-shot without a server: exit 1, cannot connect",
          status == 1 and out == b"" and b"cannot connect" in err,
          f"status {status}, stdout {out!r}, stderr {err!r}")

    status, out, err = one_shot(client, ["help", "COUNT"], base)
    check("help COUNT (one-shot, no server needed): the syntax, what it "
          "does, its replies",
          status == 0 and out.startswith(b"usage: count [<user>]\n")
          and b"Sends COUNT <user> <cookie>" in out
          and b"COUNTED <n>" in out and b"KO not your mailbox" in out,
          f"status {status}, stdout {out!r}, stderr {err!r}")
    status, out, err = one_shot(client, ["help"], base)
    listed = [info for info in (b"register", b"login", b"logout", b"message",
                                b"store", b"send", b"count", b"get", b"del",
                                b"dump", b"raw", b"whoami", b"help", b"quit")
              if b"\n  " + info not in out]
    check("help lists every command", status == 0 and not listed,
          f"missing {listed}", f"stdout {out!r}")
    status, out, err = one_shot(client, ["--help"], base)
    check("--help documents one-shot mode, the cookie, the credentials and "
          "-p", status == 0 and all(
              word in out for word in (b"COMMAND", b"SMSP_COOKIE",
                                       b"SMSP_USER", b"SMSP_PASSWORD", b"-p",
                                       b"Exit status")),
          f"status {status}, stdout {out!r}")


def echo_off(fd):
    return not termios.tcgetattr(fd)[3] & termios.ECHO


def run_password_prompt_checks(client, port, env):
    """On a terminal the password is asked for on stderr and read without
    echo; Ctrl-C there cancels and gives the terminal its echo back."""
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    base = dict(without_credentials(env), SMSP_USER="shot")
    for keys, label in ((b"pw-shot\r", "Enter"), (b"pw-shot\x03", "Ctrl-C")):
        master, slave = pty.openpty()
        proc = subprocess.Popen([client] + p + ["COUNT"], stdin=slave,
                                stdout=slave, stderr=slave, env=base,
                                start_new_session=True)
        os.close(slave)
        screen = b""
        deadline = time.monotonic() + HANG_S
        # The prompt is written before echo goes off: wait for both.
        while time.monotonic() < deadline and not (
                screen.endswith(b"password for shot: ") and echo_off(master)):
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        prompted = screen.endswith(b"password for shot: ")
        silent = echo_off(master)
        os.write(master, keys)
        screen += read_until_eof(master, proc)
        echo_back = not echo_off(master)
        os.close(master)
        check(f"pty: the password prompt, echo off while it reads ({label})",
              prompted and silent, f"screen {screen!r}")
        check(f"pty: the typed password never appears ({label})",
              b"pw-shot" not in screen, f"screen {screen!r}")
        check(f"pty: the terminal's echo is back afterwards ({label})",
              echo_back)
        if label == "Enter":
            check("pty: after Enter the command runs: COUNTED 0, exit 0",
                  proc.returncode == 0 and b"COUNTED 0" in screen,
                  f"status {proc.returncode}, screen {screen!r}")
        else:
            check("pty: Ctrl-C at the password prompt cancels: exit 1, "
                  "nothing sent",
                  proc.returncode == 1 and b"no password given" in screen
                  and b"COUNTED" not in screen,
                  f"status {proc.returncode}, screen {screen!r}")


def pty_one_shot(client, args, env, answers):
    """One-shot mode on a pseudo-terminal: each (prompt, keys) of `answers`
    typed once the screen ends with that prompt and echo is off. Returns
    (status, screen, whether every prompt came)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([client] + args, stdin=slave, stdout=slave,
                            stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + HANG_S
    prompted = True
    for prompt, keys in answers:
        while time.monotonic() < deadline and not (
                screen.endswith(prompt) and echo_off(master)):
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        prompted = prompted and screen.endswith(prompt)
        os.write(master, keys)
    screen += read_until_eof(master, proc)
    os.close(master)
    return proc.returncode, screen.replace(b"\r\n", b"\n"), prompted


def run_register_prompt_checks(client, port, env):
    """REGISTER on a terminal asks for the password twice, without echo:
    two that differ send nothing."""
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    base = without_credentials(env)
    status, screen, prompted = pty_one_shot(
        client, p + ["REGISTER", "twice"], base,
        [(b"password for twice: ", b"pw-twice\r"),
         (b"the same again: ", b"pw-twixe\r")])
    check("pty: REGISTER with two different passwords: exit 1, says so",
          prompted and status == 1 and b"the two passwords differ" in screen
          and b"pw-twi" not in screen,
          f"status {status}, screen {screen!r}")
    status, screen, prompted = pty_one_shot(
        client, p + ["REGISTER", "twice"], base,
        [(b"password for twice: ", b"pw-twice\r"),
         (b"the same again: ", b"pw-twice\r")])
    check("pty: ... nothing was registered: with the same password twice, "
          "REGISTER twice succeeds (OK <cookie>)", prompted and status == 0
          and re.search(rb"\nOK [0-9a-f]{32,}\n", screen) is not None
          and b"pw-twi" not in screen, f"status {status}, screen {screen!r}")
    check_eq("the account has that password", (0, b"COUNTED 0\n", b""),
             one_shot(client, p + ["COUNT", "twice"],
                      dict(base, SMSP_PASSWORD="pw-twice")))


def run_line_editing_checks(client, port, env, tmp):
    """Interactive: login asks for the password without echo; Ctrl-C clears
    the line and the client goes on; Ctrl-D leaves; help <command>; the
    prompt shows the session's user."""
    home = os.path.join(tmp, "home-editing")
    os.mkdir(home)
    env = dict(without_credentials(env), HOME=home)
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    session = PtyClient(client, p, env)
    steps = [session.type(b"login shot\n"),
             session.read_until_secret_prompt(b"password for shot: ")
             and os.write(session.master, b"pw-shot\r") == 8,
             session.type(b"frobnicate\x03count\n"),
             session.type(b"help getmsg\n"),
             session.type(b"\x04")]
    status, screen = session.finish()
    check("interactive: every prompt came", all(steps),
          f"steps {steps}", f"screen {screen!r}")
    check("interactive: login without a password asks for it without "
          "echo; it never appears", b"login shot\npassword for shot: \n"
          b"logged in as shot\n" in screen and b"pw-shot" not in screen,
          f"screen {screen!r}")
    check("interactive: the prompt shows the logged-in user",
          f"shot@127.0.0.1:{port}> ".encode() in screen, f"screen {screen!r}")
    check("interactive: Ctrl-C cleared the line (only count ran: 0), the "
          "client went on", b"\n0\n" in screen
          and b"unknown command" not in screen, f"screen {screen!r}")
    check("interactive: help getmsg explains get (syntax, replies)",
          b"usage: get [<user>]\nalso: getmsg\n" in screen
          and b"KO mailbox empty" in screen, f"screen {screen!r}")
    check("interactive: Ctrl-D on an empty line leaves, exit 0",
          status == 0, f"status {status}", f"screen {screen!r}")


def run_history_checks(client, port, env, tmp):
    """Two clients at once append their lines to one history file, neither
    overwriting the other's; login and register lines (passwords) are never
    written; a third client reads the file back (libedit's format)."""
    home = os.path.join(tmp, "home-history")
    os.mkdir(home)
    env = dict(without_credentials(env), HOME=home)
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    first = PtyClient(client, p, env)
    second = PtyClient(client, p, env)

    def enter(session, line):
        """Types `line` and waits for the next prompt: the line is in the
        file by then, so the order of the two clients' lines is known."""
        return session.type(line + b"\n") and session.read_until_prompt()

    steps = [enter(first, b"login shot pw-shot"),
             enter(second, b"register histo pw-secret-2"),
             enter(first, b"count"),
             enter(second, b"help  store"),
             enter(first, b"raw LOGIN shot pw-secret-3"),
             enter(first, b"whoami"),
             enter(second, b"dump"),
             first.type(b"quit\n"),
             second.type(b"\x04")]
    (status1, screen1), (status2, screen2) = first.finish(), second.finish()
    check("history: both clients ran to their end", all(steps)
          and status1 == 0 and status2 == 0, f"steps {steps}",
          f"first {screen1!r}", f"second {screen2!r}")
    path = os.path.join(home, ".smsp_client_history")
    with open(path, "rb") as f:
        saved = f.read()
    check_eq("history: every line of both clients, in the order typed, "
             "libedit's format", b"_HiStOrY_V2_\ncount\nhelp\\040\\040store"
             b"\nwhoami\ndump\nquit\n", saved)
    check("history: no password, no login or register line",
          b"pw-" not in saved and b"LOGIN" not in saved.upper()
          and b"REGISTER" not in saved.upper(), f"file {saved!r}")
    check_eq("history: the file is private to the user", 0o600,
             os.stat(path).st_mode & 0o777)
    # Ctrl-P (previous line) four times: quit, dump, whoami, "help  store".
    third = PtyClient(client, p, env)
    ok = third.type(b"\x10\x10\x10\x10\n") and third.type(b"quit\n")
    status, screen = third.finish()
    check("history: a new client loads it (Ctrl-P four times recalls "
          "'help  store')", ok and status == 0 and b"usage: store <user>" in screen,
          f"screen {screen!r}")

    # A file grown past twice the 1000 lines kept is cut back to the newest
    # 1000 when a client starts.
    home = os.path.join(tmp, "home-trim")
    os.mkdir(home)
    path = os.path.join(home, ".smsp_client_history")
    with open(path, "wb") as f:
        f.write(b"_HiStOrY_V2_\n"
                + b"".join(b"line%d\n" % i for i in range(2500)))
    status, screen = run_interactive(client, p, [b"quit"], dict(env,
                                                                HOME=home))
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    check_eq("history: a file of 2500 lines is cut to the newest 1000 (then "
             "quit is appended)", (0, 1 + 1000 + 1, b"line1500", b"quit"),
             (status, len(lines) - 1, lines[1], lines[-2]))


class OneRequestServer(ListeningServer):
    """Reads one request per connection and closes without replying, as a
    server that died after taking it would: `requests` lists what arrived."""

    def __init__(self):
        self.requests = []
        super().__init__()

    def _serve(self, conn):
        with conn, conn.makefile("rb") as lines:
            line = lines.readline()
            if line:
                self.requests.append(line)


class ClosingFirstServer(ListeningServer):
    """Closes its first connection at once (as an idle timeout would, from
    the client's view) and answers OK on later ones. `closed` is set once
    the first is closed; `requests` lists (connection number, request)."""

    def __init__(self):
        self.requests = []
        self.connections = 0
        self.closed = threading.Event()
        super().__init__()

    def _serve(self, conn):
        self.connections += 1
        number = self.connections
        if number == 1:
            conn.close()
            self.closed.set()
            return
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                self.requests.append((number, line))
                conn.sendall(b"OK\n")


def run_resend_checks(client, env, tmp):
    """A request that went out is never sent again: when its reply does not
    come the client says the outcome is unknown. A connection the server
    closed before the command is replaced, and the command sent once."""
    once = OneRequestServer()
    try:
        status, out, err = run_to_files(
            client, ["-p", str(once.port), "--timeout", REPLY_TIMEOUT], b"dump\n",
            env, tmp)
        check("scripted: a reply that never comes: exit 1, outcome unknown, "
              "sent once", status == 1 and out == b""
              and b"whether the server carried it out is unknown" in err
              and once.requests == [b"DUMP\n"],
              f"status {status}, stdout {out!r}, stderr {err!r}",
              f"requests {once.requests!r}")
        del once.requests[:]
        status, out, err = one_shot(client, ["-p", str(once.port), "DUMP"],
                                    env)
        check("one-shot: the same, exit 1", status == 1
              and b"unknown (not sent again)" in err
              and once.requests == [b"DUMP\n"],
              f"status {status}, stdout {out!r}, stderr {err!r}",
              f"requests {once.requests!r}")
    finally:
        once.stop()

    closing = ClosingFirstServer()
    try:
        proc = subprocess.Popen([client, "-p", str(closing.port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        # The command is typed only once the connection is closed.
        closing.closed.wait(HANG_S)
        out, err = proc.communicate(b"dump\n", timeout=HANG_S)
        check("a connection closed before the command is replaced: the "
              "command goes once, on the second connection",
              proc.returncode == 0 and out == b"dumped (see the server log)\n"
              and closing.requests == [(2, b"DUMP\n")],
              f"status {proc.returncode}, stdout {out!r}, stderr {err!r}",
              f"requests {closing.requests!r}")
    finally:
        closing.stop()


def run_expired_session_checks(client, server_bin, env, tmp, cleanup):
    """After a server restart the remembered cookie is dead: the client says
    the session expired, forgets it and the prompt loses the user."""
    data = os.path.join(tmp, "restarted-data")
    servers = [Server(server_bin, tmp, "restarted-1", data_dir=data,
                      start_s=START_S)]
    cleanup.append(lambda: servers[-1].stop(10))
    port = servers[0].port
    check("a server for the restart starts", port is not None,
          *servers[0].log_tail(10))
    if port is None:
        return

    def restart():
        servers[-1].stop(10)
        # The same port, so that the client reaches the new server.
        servers.append(Server(server_bin, tmp, "restarted-2",
                              ["--port", str(port)], data_dir=data,
                              start_s=START_S, ephemeral_port=False))
        check("the server restarts on the same port",
              servers[-1].port == port, *servers[-1].log_tail(10))

    env = dict(without_credentials(env), HOME=os.path.join(tmp, "home-exp"))
    os.mkdir(env["HOME"])
    p = ["-p", str(port), "--timeout", REPLY_TIMEOUT]
    status, screen = run_interactive(
        client, p, [b"register expiry pw-expiry", restart, b"count",
                    b"whoami", b"login expiry pw-expiry", b"count", b"quit"],
        env)
    prompt = f"127.0.0.1:{port}> ".encode()
    check("interactive: after a restart, count says the session expired "
          "(KO not logged in)",
          b"\nKO not logged in (the session of expiry expired" in screen,
          f"screen {screen!r}")
    check("interactive: ... and the prompt no longer shows the user, "
          "whoami says not logged in",
          b"expired: the server restarted, or the session was ended by a "
          b"login elsewhere, a LOGOUT or an administrator; log in "
          b"again)\n" + prompt + b"whoami\nnot logged in\n" in screen,
          f"screen {screen!r}")
    check("interactive: logging in again works (count 0, exit 0)",
          status == 0 and b"logged in as expiry\nexpiry@" + prompt
          + b"count\n0\n" in screen, f"status {status}",
          f"screen {screen!r}")

    # Scripted: MESSAGE gets the original literal for a dead cookie.
    out_path = os.path.join(tmp, "expired.out")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([client] + p, stdin=subprocess.PIPE,
                                stdout=out, stderr=subprocess.PIPE, env=env)
        cleanup.append(proc.kill)
        proc.stdin.write(b"login expiry pw-expiry\n")
        proc.stdin.flush()
        logged_in = wait_for(lambda: read_bytes(out_path) == b"logged in as "
                             b"expiry\n")
        if logged_in:
            restart()
        _, err = proc.communicate(b"message hi\n", timeout=HANG_S)
    check("scripted: after a restart MESSAGE gets 'You should log in first.' "
          "and the client says the session expired: exit 1",
          logged_in and proc.returncode == 1 and err.startswith(
              b"smsp-client: line 2 (message): You should log in first. "
              b"(the session of expiry expired"),
          f"status {proc.returncode}, stderr {err!r}")


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


if __name__ == "__main__":
    sys.exit(run(main, "smsp-client-test.", ("SERVER_BIN", "CLIENT_BIN")))
