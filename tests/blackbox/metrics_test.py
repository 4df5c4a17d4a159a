#!/usr/bin/env python3
# Black-box test: the metrics endpoint (issue 12 item 4).
"""Usage: metrics_test.py SERVER_BIN

Without --metrics-port the server listens on its client port and the admin
port only. With
--metrics-port 0 it prints the bound metrics address before its listening
line, binds 127.0.0.1, serves /metrics in the Prometheus text format (checked
with Debian's `promtool check metrics`), 404 for any other path and 405 for
any other method. After a known set of requests on one connection, closed,
the counters moved by exactly those requests (by command and result), the
connection counters by one connection closed by its client, and the store's
writes by the four writes done. --metrics-host and --metrics-port show in
--print-config and work in a config file; a metrics port in use stops the
start (exit 1). With a mailbox node the node
series say up, and down once the node is killed.
"""

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (WAIT_S, Client, Server, check,  # noqa: E402
                              die_with_parent, read_file, run, run_case,
                              wait_for)

FACTOR = max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
REPLY_S = 20 * FACTOR
METRICS_LINE = re.compile(
    r"^smsp-actors metrics on http://(\S+):(\d+)/metrics$", re.M)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def listening_sockets(pid):
    """{(local address as in /proc/net/tcp*, port)} of the TCP sockets the
    process `pid` listens on."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                addr, port = local.split(":")
                found.add((addr, int(port, 16)))
    return found


def get(port, path, method="GET"):
    """(status, body text) of one HTTP request to the metrics port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REPLY_S)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace"), \
            resp.getheader("Content-Type", "")
    finally:
        conn.close()


def samples(text):
    """{(name, frozenset of (label, value))): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError(f"not a sample line: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(s, name, **labels):
    return s.get((name, frozenset(labels.items())))


def requests_by(s):
    """{(command, result): count} of smsp_requests_total."""
    return {(dict(k[1])["command"], dict(k[1])["result"]): v
            for k, v in s.items() if k[0] == "smsp_requests_total"}


def promtool(text):
    """(exit status, output) of `promtool check metrics` on `text`."""
    proc = subprocess.run(["promtool", "check", "metrics"],
                          input=text.encode(), capture_output=True,
                          timeout=WAIT_S, preexec_fn=die_with_parent)
    return proc.returncode, (proc.stdout + proc.stderr).decode(
        errors="replace")


def off_by_default(binary, tmp):
    srv = Server(binary, tmp, "plain")
    try:
        if not check("a server without --metrics-port starts",
                     srv.port is not None, *srv.log_tail()):
            return
        check("without --metrics-port no metrics address is printed",
              METRICS_LINE.search(srv.out()) is None, srv.out())
        # The admin listener (smsp-admin's, on by default) is the one other
        # port; its file in the data dir names it.
        admin = read_file(os.path.join(tmp, "plain", "admin")).split()
        admin_port = {int(w.split("=", 1)[1]) for w in admin
                      if w.startswith("port=")}
        ports = {port for _, port in listening_sockets(srv.proc.pid)}
        check("without --metrics-port the server listens on its client port "
              "and the admin port only",
              len(admin_port) == 1 and ports == {srv.port} | admin_port,
              f"listening on {sorted(ports)}, admin file: {admin}")
    finally:
        srv.stop()


def served(binary, tmp):
    srv = Server(binary, tmp, "metrics", ["--metrics-port", "0"])
    try:
        if not check("a server with --metrics-port 0 starts",
                     srv.port is not None, *srv.log_tail()):
            return
        m = METRICS_LINE.search(srv.out())
        if not check("the bound metrics address is printed", m is not None,
                     srv.out()):
            return
        host, mport = m.group(1), int(m.group(2))
        check("the metrics port binds 127.0.0.1 by default",
              host == "127.0.0.1"
              and ("0100007F", mport) in listening_sockets(srv.proc.pid),
              f"printed {host}:{mport}",
              f"listening on {sorted(listening_sockets(srv.proc.pid))}")
        status, body, _ = get(mport, "/other")
        check("another path is 404", status == 404, f"status {status}")
        status, body, _ = get(mport, "/metrics", method="POST")
        check("another method is 405", status == 405, f"status {status}")

        status, before_text, ctype = get(mport, "/metrics")
        check("/metrics answers 200 with the text format 0.0.4",
              status == 200 and "version=0.0.4" in ctype,
              f"status {status}, Content-Type {ctype}")
        before = samples(before_text)

        c = Client(srv.port, REPLY_S, text=True)
        cookie = c.ask("REGISTER alice secret1")
        replies = [cookie]
        cookie = cookie[3:] if cookie and cookie.startswith("OK ") else "x"
        for req in ["LOGIN alice wrongpass", "LOGIN alice secret1"]:
            replies.append(c.ask(req))
        if replies[-1] and replies[-1].startswith("OK "):
            cookie = replies[-1][3:]
        script = [f"MESSAGE hello {cookie}", f"STORE alice {cookie}",
                  f"COUNT alice {cookie}", f"COUNT bob {cookie}",
                  f"GETMSG alice {cookie}", f"DELMSG alice {cookie}",
                  f"GETMSG alice {cookie}", "COUNT alice nosuchcookie",
                  "FROBNICATE", "COUNT alice"]
        for req in script:
            replies.append(c.ask(req))
        expected_replies = ["OK", "KO", "OK", "OK", "OK", "COUNTED 1", "KO",
                            "OK", "OK", "KO", "KO", "KO", "KO"]
        check("the requests are answered as the protocol says",
              [r is not None and r.startswith(e)
               for r, e in zip(replies, expected_replies)]
              == [True] * len(expected_replies), f"replies: {replies}")
        c.close()

        def closed_seen():
            s = samples(get(mport, "/metrics")[1])
            closed = value(s, "smsp_connections_closed_total",
                           reason="client_closed") or 0
            return s if closed >= 1 else None
        after = wait_for(closed_seen, WAIT_S * FACTOR)
        if not check("the closed connection shows in "
                     "smsp_connections_closed_total{reason=client_closed}",
                     after is not None):
            return
        want = {("REGISTER", "ok"): 1, ("LOGIN", "login_failed"): 1,
                ("LOGIN", "ok"): 1, ("MESSAGE", "ok"): 1, ("STORE", "ok"): 1,
                ("COUNT", "ok"): 1, ("COUNT", "not_your_mailbox"): 1,
                ("GETMSG", "ok"): 1, ("DELMSG", "ok"): 1,
                ("GETMSG", "mailbox_empty"): 1,
                ("COUNT", "not_logged_in"): 1,
                ("unknown", "bad_request"): 1, ("COUNT", "bad_request"): 1}
        was, now = requests_by(before), requests_by(after)
        moved = {k: now[k] - was.get(k, 0) for k in now
                 if now[k] != was.get(k, 0)}
        check("smsp_requests_total moved by exactly the requests made, by "
              "command and result", moved == want,
              f"moved: {sorted(moved.items())}",
              f"wanted: {sorted(want.items())}")
        count_latency = value(after, "smsp_request_duration_seconds_count",
                              command="COUNT")
        count_before = value(before, "smsp_request_duration_seconds_count",
                             command="COUNT") or 0
        check("the latency histogram of COUNT counted its 4 requests",
              count_latency is not None and count_latency - count_before == 4,
              f"before {count_before}, after {count_latency}")
        inf = value(after, "smsp_request_duration_seconds_bucket",
                    command="COUNT", le="+Inf")
        check("the +Inf bucket holds every request", inf == count_latency,
              f"+Inf {inf}, count {count_latency}")

        def moved_by(name, **labels):
            return (value(after, name, **labels) or 0) \
                - (value(before, name, **labels) or 0)
        check("one connection accepted and closed by its client, none open",
              moved_by("smsp_connections_accepted_total") == 1
              and moved_by("smsp_connections_closed_total",
                           reason="client_closed") == 1
              and value(after, "smsp_connections_open") == 0
              and value(after, "smsp_connections_refused_busy_total") == 0,
              f"accepted +{moved_by('smsp_connections_accepted_total')}, "
              f"open {value(after, 'smsp_connections_open')}")
        check("the store counted 4 writes: REGISTER, MESSAGE, STORE, DELMSG",
              moved_by("smsp_store_writes_total") == 4
              and moved_by("smsp_store_commits_total") >= 1
              and moved_by("smsp_store_commit_duration_seconds_count")
              == moved_by("smsp_store_commits_total"),
              f"writes +{moved_by('smsp_store_writes_total')}, commits "
              f"+{moved_by('smsp_store_commits_total')}")
        check("one session, an empty IMQ, one active mailbox",
              value(after, "smsp_sessions") == 1
              and value(after, "smsp_imq_messages") == 0
              and value(after, "smsp_mailboxes_active") == 1,
              f"sessions {value(after, 'smsp_sessions')}, imq "
              f"{value(after, 'smsp_imq_messages')}, mailboxes "
              f"{value(after, 'smsp_mailboxes_active')}")
        check("three hashes timed (REGISTER's, and each LOGIN's "
              "verification), none queued",
              moved_by("smsp_hash_duration_seconds_count") == 3
              and value(after, "smsp_hash_queue_depth") == 0,
              f"hashes +{moved_by('smsp_hash_duration_seconds_count')}")
        check("no login penalty after one failure",
              value(after, "smsp_login_penalties_active") == 0
              and value(after, "smsp_login_penalties_total") == 0)
        check("every source answered the scrape",
              all(v == 1 for k, v in after.items()
                  if k[0] == "smsp_scrape_source_up")
              and len([k for k in after if k[0] == "smsp_scrape_source_up"])
              == 6)
        check("build info, start time, RSS and descriptors are there",
              any(k[0] == "smsp_build_info" and v == 1
                  for k, v in after.items())
              and (value(after, "smsp_start_time_seconds") or 0) > 1.6e9
              and (value(after, "smsp_process_resident_memory_bytes") or 0)
              > 1e6
              and (value(after, "smsp_process_open_fds") or 0) >= 3)
        check("no node series without mailbox nodes",
              not any(k[0].startswith("smsp_mailbox_node")
                      for k in after))
        text = get(mport, "/metrics")[1]
        if shutil.which("promtool"):
            rc, out = promtool(text)
            check("promtool check metrics accepts the scrape", rc == 0, out)
        else:
            check("promtool is installed (.ci/setup: prometheus)", False)
        status = srv.stop()
        check("the server stops with the metrics endpoint (exit 0)",
              status == 0, f"exit status {status}", *srv.log_tail())
    finally:
        srv.stop()


def configured(binary, tmp):
    proc = subprocess.run([binary, "--print-config", "--metrics-port", "9109"],
                          capture_output=True, timeout=WAIT_S,
                          preexec_fn=die_with_parent)
    out = proc.stdout.decode(errors="replace")
    check("--print-config shows metrics-port (not the default) and "
          "metrics-host", proc.returncode == 0
          and "\nmetrics-port = 9109\n" in out
          and 'metrics-host = "127.0.0.1"' in out, out)
    conf = os.path.join(tmp, "metrics.conf")
    with open(conf, "w") as f:
        f.write("metrics-port = 0\nmetrics-host = \"127.0.0.1\"\n")
    srv = Server(binary, tmp, "from-file", ["--config", conf])
    try:
        m = METRICS_LINE.search(srv.out())
        check("metrics-port in a config file starts the endpoint",
              srv.port is not None and m is not None
              and get(int(m.group(2)), "/metrics")[0] == 200,
              srv.out(), *srv.log_tail())
    finally:
        srv.stop()


def port_taken(binary, tmp):
    """A metrics port in use stops the start (exit 1), naming it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        proc = subprocess.run(
            [binary, "--port", "0", "--pwhash", "min", "--data-dir",
             os.path.join(tmp, "taken"), "--metrics-port", str(taken)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT_S,
            preexec_fn=die_with_parent)
    err = proc.stderr.decode(errors="replace")
    check("a metrics port in use stops the start with exit 1, naming it",
          proc.returncode == 1
          and f"cannot serve metrics on 127.0.0.1:{taken}" in err
          and b"listening" not in proc.stdout,
          f"exit status {proc.returncode}", err)


def with_nodes(binary, tmp, cleanup):
    """A front with one mailbox node: the node series say up, then down
    once the node is killed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        node_port = s.getsockname()[1]
    timeout = str(3 * FACTOR)
    out_path = os.path.join(tmp, "node.out")
    with open(out_path, "wb") as out, \
            open(os.path.join(tmp, "node.err"), "wb") as err:
        node = subprocess.Popen(
            [binary, "node", "--port", str(node_port), "--data-dir",
             os.path.join(tmp, "node"), "--node-timeout", timeout],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp,
            preexec_fn=die_with_parent)
    cleanup.append(node.kill)
    listening = wait_for(lambda: "listening on" in read_file(out_path))
    if not check("the mailbox node starts", listening):
        return
    front = Server(binary, tmp, "front",
                   ["--metrics-port", "0", "--node-timeout", timeout,
                    "--mailbox-node", f"127.0.0.1:{node_port}"])
    cleanup.append(front.kill)
    m = METRICS_LINE.search(front.out())
    if not check("a front with a mailbox node serves metrics",
                 front.port is not None and m is not None,
                 front.out(), *front.log_tail()):
        return
    mport = int(m.group(2))

    def node_series(up):
        s = samples(get(mport, "/metrics")[1])
        want = {("up",): 1 if up else 0, ("down",): 0 if up else 1}
        return s if all(value(s, "smsp_mailbox_nodes", state=k[0]) == v
                        for k, v in want.items()) else None
    s = wait_for(lambda: node_series(True), WAIT_S * FACTOR)
    check("smsp_mailbox_nodes says the node is up",
          s is not None and value(s, "smsp_mailbox_node_up",
                                  node=f"127.0.0.1:{node_port}") == 1)
    node.kill()
    node.wait()
    s = wait_for(lambda: node_series(False), WAIT_S * FACTOR)
    check("smsp_mailbox_nodes says the node is down once it is killed",
          s is not None and value(s, "smsp_mailbox_node_up",
                                  node=f"127.0.0.1:{node_port}") == 0)
    rc, out = promtool(get(mport, "/metrics")[1])
    check("promtool accepts the scrape with node series", rc == 0, out)
    front.stop()


def body(args, tmp, cleanup):
    binary = args[0]
    run_case("off by default", off_by_default, binary, tmp)
    run_case("served", served, binary, tmp)
    run_case("configured", configured, binary, tmp)
    run_case("port taken", port_taken, binary, tmp)
    run_case("with nodes", with_nodes, binary, tmp, cleanup)


if __name__ == "__main__":
    sys.exit(run(body, "smsp-metrics-"))
