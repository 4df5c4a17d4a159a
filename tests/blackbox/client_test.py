#!/usr/bin/env python3
# Black-box test: smsp-client escapes received text on a terminal only.
"""Usage: client_test.py SERVER_BIN CLIENT_BIN

Starts the built server on an ephemeral port with a fresh data directory,
posts one hostile message (colour and OSC title sequences, C1 controls,
invalid UTF-8, backslashes, CR, TAB, DEL, valid UTF-8 in several scripts)
and reads it back with the built client: under a pseudo-terminal, scripted
(stdin a pipe) and interactive (libedit), with stdout to a file and to a
pipe, and with each --escape override. A fake server whose replies hold
escape sequences checks the other paths that print server bytes (refusals
on stderr and stdout, the cookie shown by whoami).
"""

import os
import pty
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
from blackbox_support import WAIT_S, Server, check, run  # noqa: E402

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


class FakeServer:
    """Answers LOGIN with a cookie holding an OSC sequence and everything
    else with a refusal holding escape sequences: what a hostile or broken
    server could send."""

    COOKIE = b"c00k1e\x1b]0;fake\x07"
    REFUSAL = b"KO refused\x1b[2J\xc2\x9b1m\xff"

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

    def _serve(self, conn):
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                reply = (b"OK " + self.COOKIE if line.startswith(b"LOGIN ")
                         else self.REFUSAL)
                conn.sendall(reply + b"\n")

    def stop(self):
        self.sock.close()


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


def line_editor_reading(fd):
    """Whether the terminal of pty master `fd` is in the line editor's own
    mode (neither canonical nor echoing): only then does the editor, not the
    kernel, echo what is typed."""
    lflag = termios.tcgetattr(fd)[3]
    return not lflag & (termios.ICANON | termios.ECHO)


def run_interactive(client, args, lines, env):
    """Interactive mode: stdin, stdout and stderr on one pseudo-terminal in
    its default (cooked) settings, as a reader's; each line is typed once the
    client's prompt is on the screen and libedit reads the terminal in its
    own mode. Returns (status, screen with CRLF as LF)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([client] + args, stdin=slave, stdout=slave,
                            stderr=slave, env=env,
                            # Its own session: no job-control signal or
                            # terminal change reaches the test runner.
                            start_new_session=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + WAIT_S

    def read_until_prompt(mark):
        """Reads until a prompt follows a line break after screen[mark:] and
        the line editor has switched the terminal to its own mode. libedit
        writes the prompt while the terminal is still cooked: a line typed
        then is echoed by the kernel after the prompt and once more by
        libedit on the next line, where the command's output belongs."""
        nonlocal screen
        while time.monotonic() < deadline:
            prompted = screen.endswith(b"> ") and b"\n" in screen[mark:]
            if prompted and line_editor_reading(master):
                return True
            # Once prompted, only the terminal's mode is awaited: no output
            # comes before the line is typed, so poll it briefly.
            ready, _, _ = select.select([master], [], [],
                                        0.005 if prompted else 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    return False
                if not chunk:
                    return False
                screen += chunk
        return False

    # The greeting line, then each line typed after the prompt that follows
    # the previous one's output.
    mark = 0
    for line in lines:
        if not read_until_prompt(mark):
            break
        mark = len(screen)
        os.write(master, line + b"\n")
    screen += read_until_eof(master, proc)
    os.close(master)
    return proc.returncode, screen.replace(b"\r\n", b"\n")


def main(binaries, tmp, cleanup):
    server_bin, client = binaries
    # HOME: the interactive client keeps its history there.
    env = dict(os.environ, HOME=tmp, TERM="xterm")
    server = Server(server_bin, tmp, "server",
                    data_dir=os.path.join(tmp, "data"), start_s=20)
    cleanup.append(lambda: server.stop(10))
    fake = FakeServer()
    cleanup.append(fake.stop)
    if server.port is None:
        check("server starts", False,
              "no 'smsp-actors listening on <host>:<port>' within 20 s",
              f"stdout: {server.out()[-2000:]!r}", *server.log_tail(20))
        return
    run_checks(client, server.port, fake.port, env, tmp)


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
    proc = subprocess.run([client] + to_server, input=raw_script,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, timeout=WAIT_S)
    check_eq("stdout to a pipe: raw passes the reply through byte for byte",
             (0, b"OK " + TEXT + b"\n", b""),
             (proc.returncode, proc.stdout, proc.stderr))
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


if __name__ == "__main__":
    sys.exit(run(main, "smsp-client-test.", ("SERVER_BIN", "CLIENT_BIN")))
