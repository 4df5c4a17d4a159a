#!/usr/bin/env python3
# Black-box test of the admin tool (issue 12 item 5): smsp-admin against the
# built server, end to end.
"""Usage: admin_test.py SERVER_BIN ADMIN_BIN

A server writes DATA_DIR/admin with mode 0600; smsp-admin's stats, users
(all and by glob), sessions, kick, passwd (from stdin) and user delete act
on it as SMSP clients then see; a wrong token is refused with one ERR line
and the connection closed before anything else is processed (through
smsp-admin with a doctored admin file, and on a raw socket); usage errors
exit 2, failures 1. After a clean stop the admin file is gone, stats and
users read the data dir ("server not running"), the write commands fail
with exit 1 and change nothing. After kill -9 the stale file's port
refuses, and the tool reads the data dir too; with --admin-port off there is
no admin file. With a mailbox node, user delete is refused and changes
nothing, and passwd works.
"""

import os
import re
import select
import socket
import stat
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (WAIT_S, Client, Server, check,  # noqa: E402
                              die_with_parent, free_port, read_file,
                              recv_line, run, wait_for)

FACTOR = max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
# Hang detectors only: a slow machine does not fail a test.
REPLY_S = 20 * FACTOR
RUN_S = 60 * FACTOR


def admin(binary, data_dir, *args, stdin=b""):
    """Runs smsp-admin to its end: (status, stdout, stderr) as text."""
    proc = subprocess.run([binary, "--data-dir", data_dir] + list(args),
                          input=stdin, capture_output=True, timeout=RUN_S,
                          preexec_fn=die_with_parent)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def admin_on_terminal(binary, data_dir, args, answers):
    """Runs smsp-admin with a pseudo-terminal as stdin and stderr, typing
    each answer once its prompt shows: (status, stdout, what the terminal
    showed), or status None if a prompt never came."""
    master, slave = os.openpty()
    proc = subprocess.Popen([binary, "--data-dir", data_dir] + list(args),
                            stdin=slave, stdout=subprocess.PIPE, stderr=slave,
                            preexec_fn=die_with_parent)
    os.close(slave)
    shown = b""

    def read_some(timeout):
        nonlocal shown
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        shown += data
        return bool(data)

    for prompt, answer in answers:
        deadline = time.monotonic() + RUN_S
        while prompt not in shown and time.monotonic() < deadline:
            if not read_some(0.1) and proc.poll() is not None:
                break
        if prompt not in shown:
            proc.kill()
            proc.wait()
            os.close(master)
            return None, "", shown.decode(errors="replace")
        shown = shown.replace(prompt, b"<" + prompt + b">", 1)
        os.write(master, answer + b"\n")
    out = proc.communicate(timeout=RUN_S)[0]
    while read_some(0.1):
        pass
    os.close(master)
    return (proc.returncode, out.decode(errors="replace"),
            shown.decode(errors="replace"))


def fields(text):
    """`key: value` lines as a dict."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        out[key] = value
    return out


def admin_file(data_dir):
    """The admin file's key=value lines as a dict ({} when missing)."""
    path = os.path.join(data_dir, "admin")
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                key, _, value = line.strip().partition("=")
                out[key] = value
    return out


def raw_exchange(port, data):
    """Sends `data` at once to the admin port; every line back until the
    server closes: (lines, closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_S)
    sock.sendall(data)
    lines, buf = [], b""
    while True:
        line, buf = recv_line(sock, buf, REPLY_S)
        if line is None:
            break
        lines.append(line.decode(errors="replace"))
    # recv_line gives None at EOF or after the timeout: tell them apart.
    try:
        sock.settimeout(0.5)
        closed = sock.recv(1) == b""
    except socket.timeout:
        closed = False
    except OSError:
        closed = True
    sock.close()
    return lines, closed


def start_node(binary, tmp, name):
    """`smsp-actors node` on a free port: (process, port or None once it
    printed its listening line, exited, or WAIT_S passed)."""
    out_path = os.path.join(tmp, name + ".out")
    with open(out_path, "wb") as out, \
            open(os.path.join(tmp, name + ".err"), "wb") as err:
        proc = subprocess.Popen(
            [binary, "node", "--port", str(free_port()), "--data-dir",
             os.path.join(tmp, name), "--node-timeout", str(3 * FACTOR)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp,
            preexec_fn=die_with_parent)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"node listening on \S+:(\d+)$", read_file(out_path),
                      re.M)
        if m:
            return proc, int(m.group(1))
        time.sleep(0.05)
    return proc, None


def check_nodes(server_bin, admin_bin, tmp, cleanup):
    """With a mailbox node, user delete is refused and changes nothing;
    passwd works."""
    node, node_port = start_node(server_bin, tmp, "node")
    cleanup.append(lambda: (node.kill(), node.wait()))
    if not check("a mailbox node starts", node_port is not None):
        return
    data = os.path.join(tmp, "front")
    where = f"127.0.0.1:{node_port}"
    front = Server(server_bin, tmp, "front",
                   ["--mailbox-node", where, "--node-timeout", str(3 * FACTOR)],
                   data_dir=data)
    cleanup.append(front.kill)
    if not check("a front with that node starts", front.port is not None,
                 *front.log_tail()):
        return
    wait_for(lambda: f"node {where} up: " in front.log())
    c = Client(front.port, REPLY_S, text=True)
    cleanup.append(c.close)
    cookie = (c.ask("REGISTER dora dorapw") or "").split(" ")[-1]
    c.ask(f"MESSAGE to self {cookie}")
    stored = c.ask(f"STORE dora {cookie}")
    status, out, err = admin(admin_bin, data, "user", "delete", "dora")
    check("with mailbox nodes, user delete is refused (exit 1) naming them",
          status == 1 and "mailbox node" in err, status, out, err)
    cookie = (c.ask("LOGIN dora dorapw") or "").split(" ")[-1]
    check("the refused delete changed nothing: the account, and her mail "
          "on the node",
          admin(admin_bin, data, "users")[1].split() == ["dora"]
          and stored == "OK" and c.ask(f"COUNT dora {cookie}") == "COUNTED 1",
          stored)
    status, out, err = admin(admin_bin, data, "passwd", "dora",
                             stdin=b"d0ra-new\n")
    check("with mailbox nodes, passwd works", status == 0
          and (c.ask("LOGIN dora d0ra-new") or "").startswith("OK "),
          status, out, err)
    check("the front stops cleanly", front.stop() == 0, *front.log_tail())


def body(args, tmp, cleanup):
    server_bin, admin_bin = args
    # The part with a mailbox node runs as a test of its own (ctest's
    # blackbox.admin_cluster): a process linked to a node has CAF's
    # heartbeats on, which tests/sanitize.sh runs without leak checks.
    part = os.environ.get("SMSP_ADMIN_TEST_PART", "all")
    if part == "cluster":
        check_nodes(server_bin, admin_bin, tmp, cleanup)
        return
    data = os.path.join(tmp, "data")
    srv = Server(server_bin, tmp, "srv", data_dir=data)
    cleanup.append(srv.kill)
    if not check("the server starts", srv.port is not None, *srv.log_tail()):
        return
    # -- the admin file -------------------------------------------------------
    path = os.path.join(data, "admin")
    mode = stat.S_IMODE(os.stat(path).st_mode) if os.path.exists(path) else None
    check("DATA_DIR/admin exists with mode 0600", mode == 0o600, oct(mode or 0))
    info = admin_file(data)
    check("the admin file names 127.0.0.1, a port and a 64-digit token",
          info.get("host") == "127.0.0.1" and info.get("port", "0") != "0"
          and len(info.get("token", "")) == 64, info)
    check("no temporary admin file is left",
          sorted(os.listdir(data)) == sorted(
              n for n in os.listdir(data) if not n.startswith("admin.tmp")))
    admin_port = int(info.get("port", "0"))
    # -- users and traffic ----------------------------------------------------
    c = Client(srv.port, REPLY_S, text=True)
    cleanup.append(c.close)
    cookies = {}
    for name, pw in (("alice", "alicepw"), ("bob", "bobpw"),
                     ("carol", "carolpw")):
        reply = c.ask(f"REGISTER {name} {pw}")
        cookies[name] = (reply or "").split(" ")[-1]
    c.ask(f"MESSAGE for bob {cookies['alice']}")
    c.ask(f"STORE bob {cookies['alice']}")
    c.ask(f"MESSAGE bob unstored {cookies['bob']}")
    # -- stats ------------------------------------------------------------------
    status, out, err = admin(admin_bin, data, "stats")
    st = fields(out)
    check("stats exits 0 with the server's figures",
          status == 0 and st.get("accounts") == "3"
          and st.get("sessions") == "3" and st.get("connections") == "1"
          and st.get("imq") == "1" and st.get("store_messages") == "1"
          and "version" in st and "uptime_s" in st
          and "mailboxes_active" in st and "mailboxes_passivated" in st,
          status, out, err)
    # -- users, sessions, kick ------------------------------------------------
    status, out, err = admin(admin_bin, data, "users")
    check("users lists every account", status == 0
          and out.split() == ["alice", "bob", "carol"], status, out, err)
    status, out, err = admin(admin_bin, data, "users", "[bc]*")
    check("users PATTERN lists the matching ones", status == 0
          and out.split() == ["bob", "carol"], status, out, err)
    status, out, err = admin(admin_bin, data, "users", "a%")
    check("a bad pattern is a usage error (exit 2)", status == 2,
          status, out, err)
    status, out, err = admin(admin_bin, data, "sessions")
    check("sessions lists the users with a live session", status == 0
          and out.split() == ["alice", "bob", "carol"], status, out, err)
    status, out, err = admin(admin_bin, data, "kick", "carol")
    check("kick exits 0", status == 0, status, out, err)
    check("a kicked user's cookie is no session any more",
          c.ask(f"COUNT carol {cookies['carol']}") == "KO not logged in")
    status, out, err = admin(admin_bin, data, "sessions")
    check("sessions no longer lists the kicked user",
          out.split() == ["alice", "bob"], status, out, err)
    status, out, err = admin(admin_bin, data, "kick", "carol")
    check("kick without a session exits 1 saying so",
          status == 1 and "no live session" in err, status, out, err)
    # -- passwd -----------------------------------------------------------------
    status, out, err = admin(admin_bin, data, "passwd", "alice",
                             stdin=b"n3w-pass\n")
    check("passwd with the password on stdin exits 0", status == 0,
          status, out, err)
    check("passwd ends the user's session",
          c.ask(f"COUNT alice {cookies['alice']}") == "KO not logged in")
    check("the old password is refused",
          (c.ask("LOGIN alice alicepw") or "").startswith("KO"))
    check("the new password is accepted",
          (c.ask("LOGIN alice n3w-pass") or "").startswith("OK "))
    status, out, shown = admin_on_terminal(
        admin_bin, data, ["passwd", "alice"],
        [(b"New password for alice: ", b"tty-pass1"),
         (b"Retype it: ", b"tty-pass1")])
    check("passwd on a terminal asks twice and echoes nothing",
          status == 0 and "tty-pass1" not in shown, status, out, shown)
    check("the password typed on the terminal is the new one",
          (c.ask("LOGIN alice tty-pass1") or "").startswith("OK "))
    status, out, shown = admin_on_terminal(
        admin_bin, data, ["passwd", "alice"],
        [(b"New password for alice: ", b"one-pass"),
         (b"Retype it: ", b"other-pass")])
    check("two different passwords on the terminal change nothing (exit 1)",
          status == 1 and "do not match" in shown
          and (c.ask("LOGIN alice tty-pass1") or "").startswith("OK "),
          status, out, shown)
    status, out, err = admin(admin_bin, data, "passwd", "nobody",
                             stdin=b"whatever\n")
    check("passwd of an unknown user exits 1",
          status == 1 and "no such user" in err, status, out, err)
    status, out, err = admin(admin_bin, data, "passwd", "alice",
                             stdin=b"two words\n")
    check("passwd refuses a password with a space (exit 1)",
          status == 1 and "bad password" in err, status, out, err)
    # -- user delete -------------------------------------------------------------
    status, out, err = admin(admin_bin, data, "user", "delete", "bob")
    check("user delete exits 0 and says what went",
          status == 0 and "messages=1" in out and "unstored=1" in out,
          status, out, err)
    check("the deleted user cannot log in",
          (c.ask("LOGIN bob bobpw") or "").startswith("KO"))
    check("the deleted user's cookie is no session",
          c.ask(f"COUNT bob {cookies['bob']}") == "KO not logged in")
    status, out, err = admin(admin_bin, data, "users")
    check("users no longer lists the deleted user",
          out.split() == ["alice", "carol"], status, out, err)
    status, out, err = admin(admin_bin, data, "stats")
    st = fields(out)
    check("stats after the delete: 2 accounts, no message, empty IMQ",
          st.get("accounts") == "2" and st.get("store_messages") == "0"
          and st.get("imq") == "0", out, err)
    status, out, err = admin(admin_bin, data, "user", "delete", "bob")
    check("deleting an unknown user exits 1",
          status == 1 and "no such user" in err, status, out, err)
    # -- usage ---------------------------------------------------------------------
    for argv in (["user", "delete"], ["frobnicate"], [], ["kick"],
                 ["--no-such-option", "stats"]):
        status, out, err = admin(admin_bin, data, *argv)
        check(f"smsp-admin {' '.join(argv)} is a usage error (exit 2)",
              status == 2, status, out, err)
    proc = subprocess.run([admin_bin, "--version"], capture_output=True,
                          timeout=RUN_S)
    check("--version exits 0 and names the tool", proc.returncode == 0
          and proc.stdout.decode().startswith("smsp-admin "), proc.stdout)
    # -- a wrong token ---------------------------------------------------------------
    forged = os.path.join(tmp, "forged")
    os.makedirs(forged)
    with open(os.path.join(forged, "admin"), "w") as f:
        f.write(f"host=127.0.0.1\nport={admin_port}\ntoken={'0' * 64}\n")
    status, out, err = admin(admin_bin, forged, "users")
    check("smsp-admin with a wrong token exits 1 saying so",
          status == 1 and "wrong token" in err and out == "",
          status, out, err)
    lines, closed = raw_exchange(admin_port,
                                 f"AUTH {'f' * 64}\nSTATS\n".encode())
    check("a wrong token gets one ERR line and the connection is closed",
          lines == ["ERR wrong token"] and closed, lines, closed)
    lines, closed = raw_exchange(admin_port, b"KICK alice\nSTATS\n")
    check("a request before AUTH is refused and the connection closed",
          len(lines) == 1 and lines[0].startswith("ERR authenticate first")
          and closed, lines, closed)
    check("the refused requests changed nothing: alice still has a session",
          admin(admin_bin, data, "sessions")[1].split() == ["alice"])
    lines, closed = raw_exchange(
        admin_port, f"AUTH {info.get('token')}\nSESSIONS\n".encode())
    check("the right token on a raw connection is served",
          lines[:2] == ["OK", "OK alice"], lines)
    c2 = Client(admin_port, REPLY_S, text=True)
    cleanup.append(c2.close)
    check("an SMSP request on the admin port is refused",
          (c2.ask("LOGIN alice n3w-pass") or "") == "ERR authenticate first: "
          "AUTH <token>")
    # -- a clean stop -------------------------------------------------------------------
    c.close()
    check("the server stops cleanly", srv.stop() == 0, *srv.log_tail())
    check("the admin file is removed at a clean stop",
          not os.path.exists(path), os.listdir(data))
    # -- offline --------------------------------------------------------------------------
    db = os.path.join(data, "smsp.db")
    before = open(db, "rb").read()
    status, out, err = admin(admin_bin, data, "stats")
    st = fields(out)
    check("offline stats reads the data dir",
          status == 0 and "server not running; read from the data dir" in err
          and st.get("accounts") == "2" and st.get("store_messages") == "0",
          status, out, err)
    status, out, err = admin(admin_bin, data, "users", "c*")
    check("offline users reads the data dir",
          status == 0 and out.split() == ["carol"]
          and "server not running" in err, status, out, err)
    for argv, stdin in ((["user", "delete", "carol"], b""),
                        (["passwd", "carol"], b"x1234567\n"),
                        (["kick", "carol"], b""), (["sessions"], b"")):
        status, out, err = admin(admin_bin, data, *argv, stdin=stdin)
        check(f"offline {' '.join(argv)} fails (exit 1) asking for the server",
              status == 1 and "needs the running server" in err,
              status, out, err)
    check("the offline commands changed nothing in the database",
          open(db, "rb").read() == before)
    # -- a crashed server leaves its file; its port refuses --------------------------------
    srv2 = Server(server_bin, tmp, "srv2", data_dir=data)
    cleanup.append(srv2.kill)
    if check("the server starts again", srv2.port is not None,
             *srv2.log_tail()):
        status, out, err = admin(admin_bin, data, "users")
        check("users through the restarted server",
              status == 0 and out.split() == ["alice", "carol"]
              and err == "", status, out, err)
        srv2.kill()
        check("kill -9 leaves the admin file", os.path.exists(path))
        status, out, err = admin(admin_bin, data, "users")
        check("with the stale file's port refused, users reads the data dir",
              status == 0 and out.split() == ["alice", "carol"]
              and "read from the data dir" in err, status, out, err)
        status, out, err = admin(admin_bin, data, "kick", "alice")
        check("with the stale file, kick fails (exit 1)", status == 1,
              status, out, err)
    # -- --admin-port off ------------------------------------------------------------------
    srv3 = Server(server_bin, tmp, "srv3", ["--admin-port", "off"],
                  data_dir=data)
    cleanup.append(srv3.kill)
    if check("the server starts with --admin-port off", srv3.port is not None,
             *srv3.log_tail()):
        check("--admin-port off writes no admin file (and the stale one "
              "is gone)", not os.path.exists(path), os.listdir(data))
        status, out, err = admin(admin_bin, data, "users")
        check("with no admin listener, users reads the data dir, saying "
              "that the server runs",
              status == 0 and out.split() == ["alice", "carol"]
              and "without a reachable admin listener" in err,
              status, out, err)
        check("the server with --admin-port off stops cleanly",
              srv3.stop() == 0, *srv3.log_tail())
    if part == "all":
        check_nodes(server_bin, admin_bin, tmp, cleanup)


if __name__ == "__main__":
    sys.exit(run(body, "smsp-admin-test-", ("SERVER_BIN", "ADMIN_BIN")))
