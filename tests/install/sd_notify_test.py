#!/usr/bin/env python3
"""Readiness under systemd (issue 12, item 7): with NOTIFY_SOCKET set, as a
Type=notify unit has it, the server and a mailbox node send READY=1 once
they print their listening line, and STOPPING=1 on SIGTERM; then they exit 0.

    sd_notify_test.py SERVER_BIN
"""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "blackbox"))
from blackbox_support import (WAIT_S, Server, check, die_with_parent,  # noqa: E402
                              run, wait_for)


def receive(sock, timeout=WAIT_S):
    """The notification datagrams that arrive within `timeout` until one
    holds READY=1 or STOPPING=1: a list of str."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            break
        got.append(data)
        if "READY=1" in data or "STOPPING=1" in data:
            break
    return got


def notify_socket(tmp, name):
    path = os.path.join(tmp, name)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def server_case(server_bin, tmp, cleanup):
    sock, path = notify_socket(tmp, "notify-server")
    cleanup.append(sock.close)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        srv = Server(server_bin, tmp, "server")
    finally:
        del os.environ["NOTIFY_SOCKET"]
    cleanup.append(srv.kill)
    if not check("server starts with NOTIFY_SOCKET set", srv.port is not None,
                 *srv.log_tail()):
        return
    ready = receive(sock)
    check("server: READY=1 after the listening line",
          any("READY=1" in d for d in ready), f"received {ready!r}")
    srv.proc.send_signal(15)
    stopping = receive(sock)
    check("server: STOPPING=1 on SIGTERM",
          any("STOPPING=1" in d for d in stopping), f"received {stopping!r}")
    code = srv.stop()
    check("server exits 0", code == 0, f"exit status {code}", *srv.log_tail())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_case(server_bin, tmp, cleanup):
    sock, path = notify_socket(tmp, "notify-node")
    cleanup.append(sock.close)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    out_path = os.path.join(tmp, "node.out")
    with open(out_path, "wb") as out, \
            open(os.path.join(tmp, "node.err"), "wb") as err:
        proc = subprocess.Popen(
            [server_bin, "node", "--port", str(free_port()), "--data-dir",
             os.path.join(tmp, "node-data")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp,
            env=env, preexec_fn=die_with_parent)
    cleanup.append(lambda: (proc.kill(), proc.wait()))
    ready = receive(sock)
    with open(out_path) as f:
        listening = re.search(r"^smsp-actors node listening on ", f.read(),
                              re.M)
    check("node: READY=1, after its listening line",
          any("READY=1" in d for d in ready) and listening is not None,
          f"received {ready!r}")
    proc.send_signal(15)
    stopping = receive(sock)
    check("node: STOPPING=1 on SIGTERM",
          any("STOPPING=1" in d for d in stopping), f"received {stopping!r}")
    wait_for(lambda: proc.poll() is not None)
    check("node exits 0", proc.poll() == 0, f"exit status {proc.poll()}")


def body(args, tmp, cleanup):
    server_bin = args[0]
    server_case(server_bin, tmp, cleanup)
    node_case(server_bin, tmp, cleanup)


if __name__ == "__main__":
    sys.exit(run(body, "smsp-sd-notify-"))
