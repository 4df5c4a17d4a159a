#!/usr/bin/env python3
# Black-box test: a front with mailbox nodes (smsp-actors node), as separate
# processes: commands, replies identical to a single server, restarts, the
# recorded node list, mutual TLS and version mismatch.
"""Usage: cluster_test.py SERVER_BIN CLIENT_BIN

(1) A front and 2 nodes: 16 users spread over both nodes (DUMP's per-node
    "user(s) placed"); every command and error reply works, also through
    smsp-client (CLIENT_BIN).
(2) One scripted session (every command and error reply, several users,
    the cookies the server returned) gives byte-identical replies, cookies
    normalized, against a single server and against a cluster; DUMP lists
    the same totals, IMQ and mailboxes.
(3) Mail survives a front restart and a node restart (SIGTERM, started
    again on the same ports and data dirs); a stopped node's users get
    'KO mailbox unavailable', the others are served.
(4) The node list recorded in the front's data dir: a swapped node refuses
    the start (exit 1, how many users would move, some names), also for a
    data dir with accounts and no nodes; --accept-node-change starts, and
    the accepted list then starts without it.
(5) TLS: a node on a non-loopback address without TLS, or with one or two
    of the three TLS options, exits 2; a TLS cluster with a throwaway CA
    (made here with openssl) serves every command; a front with a
    certificate of another CA, or with no TLS, gets 'KO mailbox unavailable'
    and logs the node unreachable; the nodes keep serving the good front.
(6) A node claiming another version (SMSP_ACTORS_TEST_VERSION): both logs
    name both versions, its users get 'KO mailbox unavailable', the other
    node's users are served.

Every process is stopped at the end, also when a check fails. Timeouts are
hang detectors only: a slow machine does not fail the test.
"""

import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blackbox_support as bb  # noqa: E402
from blackbox_support import (LISTENING, WAIT_S, check,  # noqa: E402
                              die_with_parent, free_port, read_file, run,
                              run_case, wait_for)

REPLY_S = 20 * max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
# --node-timeout of every front and node: three times the default, so that a
# busy machine (CI's 2 shared cores, TLS handshakes, a sanitized build)
# delaying a heartbeat does not take a healthy node for a dead one; times
# SMSP_TEST_TIME_FACTOR (tests/sanitize.sh). Every case that wants a node
# unavailable stops it or refuses it, which is noticed at once.
NODE_TIMEOUT = str(3 * max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR",
                                                 "1"))))
NODE_LISTENING = "smsp-actors node listening on "
COOKIE = re.compile(r"\b[0-9a-f]{32,}\b")
UNAVAILABLE = "KO mailbox unavailable"


def addr(port):
    return f"127.0.0.1:{port}"


class Node(bb.Server):
    """`smsp-actors node --port PORT --data-dir DATA` + `args`, with `env`
    added to the environment; stdout to tmp/NAME.out, the log to
    tmp/NAME.err. Returns once it prints its listening line (`port` is then
    set), exits, or WAIT_S pass (then it is killed)."""

    def __init__(self, binary, tmp, name, port, args=(), *, data_dir=None,
                 env=None):
        self.name = name
        self.out_path = os.path.join(tmp, name + ".out")
        self.err_path = os.path.join(tmp, name + ".err")
        self.port = None
        argv = [binary, "node", "--port", str(port), "--data-dir",
                data_dir or os.path.join(tmp, name), "--node-timeout",
                NODE_TIMEOUT] + list(args)
        environ = dict(os.environ, **(env or {}))
        with open(self.out_path, "wb") as out, \
                open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=tmp, env=environ, preexec_fn=die_with_parent)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(re.escape(NODE_LISTENING) + r"\S+:(\d+)$",
                          self.out(), re.M)
            if m:
                self.port = int(m.group(1))
                return
            time.sleep(0.05)
        self.kill()


def start_node(binary, tmp, cleanup, name, port, args=(), data_dir=None,
               env=None):
    node = Node(binary, tmp, name, port, args, data_dir=data_dir, env=env)
    cleanup.append(node.kill)
    check(f"node {name} starts on port {port}", node.port == port,
          f"exit status: {node.proc.poll()}", *node.log_tail())
    return node


def start_front(binary, tmp, cleanup, name, node_ports, args=(),
                data_dir=None, wait_up=None):
    """The front on an ephemeral port with `--mailbox-node` for each port;
    waits (bounded) until its log says each port of `wait_up` (default: all
    of them) is up. Returns the Server (port None if it did not start)."""
    argv = ["--node-timeout", NODE_TIMEOUT]
    for p in node_ports:
        argv += ["--mailbox-node", addr(p)]
    front = bb.Server(binary, tmp, name, argv + list(args),
                      data_dir=data_dir)
    cleanup.append(front.kill)
    if front.port is not None:
        for p in (node_ports if wait_up is None else wait_up):
            wait_for(lambda p=p: f"node {addr(p)} up: " in front.log())
    return front


def connect(port):
    return bb.Client(port, REPLY_S, text=True)


def cookie_of(reply):
    """The cookie of an `OK <cookie>` reply, or None."""
    if reply and re.fullmatch(r"OK [0-9a-f]{32,}", reply):
        return reply[3:]
    return None


class Talk:
    """Requests on one connection, each compared with what it should get;
    the mismatches are kept for a check's details."""

    def __init__(self, port):
        self.client = connect(port)
        self.wrong = []
        self.asked = 0

    def ask(self, request):
        self.asked += 1
        return self.client.ask(request)

    def expect(self, request, expected):
        """`expected`: the exact reply, or a compiled pattern it must match."""
        reply = self.ask(request)
        ok = (reply is not None and expected.fullmatch(reply)) \
            if isinstance(expected, re.Pattern) else reply == expected
        if not ok:
            self.wrong.append(f"{request[:80]!r} -> {reply!r}, expected "
                              f"{getattr(expected, 'pattern', expected)!r}")
        return reply

    def verdict(self, name):
        """A check that every expectation since the last verdict held."""
        ok = check(f"{name} ({self.asked} request(s))", not self.wrong,
                   *self.wrong[:8])
        self.wrong = []
        self.asked = 0
        return ok

    def close(self):
        self.client.close()


def dump_lines(front, kinds, since=0):
    """After a DUMP: the log's `DUMP <kind>...` lines (timestamp removed)
    from byte `since` on, once the run's `DUMP done` line is there."""
    wait_for(lambda: "DUMP done" in front.log_bytes()[since:].decode(
        errors="replace"))
    text = front.log_bytes()[since:].decode(errors="replace")
    out = []
    for line in text.splitlines():
        m = re.search(r"\bDUMP ((\S+).*)$", line)
        if m and m.group(2) in kinds:
            out.append(m.group(1))
    return out


def placed_per_node(front, ports):
    """DUMP: {port: (state, users placed)} from the front's log."""
    since = len(front.log_bytes())
    talk = Talk(front.port)
    try:
        reply = talk.ask("DUMP")
    finally:
        talk.close()
    # The node status lines, not the nodes' mailbox listings.
    lines = [line for line in dump_lines(front, ("node",), since)
             if re.match(r"node \S+: (up|down),", line)]
    placed = {}
    for p in ports:
        for line in lines:
            m = re.match(re.escape(f"node {addr(p)}: ") +
                         r"(\w+), (\d+) user\(s\) placed", line)
            if m:
                placed[p] = (m.group(1), int(m.group(2)))
    return reply, placed, lines


def failure_lines(proc, n=40):
    """What explains a bad exit: a sanitizer's report from its start (its
    first lines name the cause), else the log's tail."""
    lines = proc.log().splitlines()
    for i, line in enumerate(lines):
        if "Sanitizer" in line:
            return ["log: " + x for x in lines[i:i + n]]
    return proc.log_tail(n)


def stop_all(label, fronts, nodes):
    """SIGTERM to the fronts, then to all the nodes at once: a check that
    each exits 0 (a hang costs WAIT_S once, not once per process)."""
    statuses = [(p.name, p.stop()) for p in fronts]
    for p in nodes:
        if p.alive():
            p.proc.send_signal(signal.SIGTERM)
    statuses += [(p.name, p.stop()) for p in nodes]
    failed = [p for p, (_, s) in zip(list(fronts) + list(nodes), statuses)
              if s != 0]
    check(f"{label} SIGTERM stops the front(s) and the nodes with exit 0",
          all(s == 0 for _, s in statuses), f"exit statuses: {statuses}",
          *[f"{p.name}: {line}" for p in failed
            for line in failure_lines(p)])


# -- (1) every command against a cluster ------------------------------------

def exercise_commands(label, front, node_ports, prefix):
    """Registers 16 users `<prefix>0..15` (password pw<i>) and runs every
    command and error reply; checks the spread over the nodes. Returns
    {user: cookie} of the live sessions at the end."""
    users = [f"{prefix}{i}" for i in range(16)]
    pw = {u: f"pw{i}" for i, u in enumerate(users)}
    talk = Talk(front.port)
    cookie_re = re.compile(r"OK [0-9a-f]{32,}")
    try:
        ck = {u: cookie_of(talk.expect(f"REGISTER {u} {pw[u]}", cookie_re))
              for u in users}
        talk.verdict(f"{label} REGISTER of {len(users)} users answers OK "
                     "<cookie>")
        if any(c is None for c in ck.values()):
            return {}
        reply, placed, lines = placed_per_node(front, node_ports)
        check(f"{label} DUMP answers OK and the users spread over both "
              f"nodes (user(s) placed: {[placed.get(p) for p in node_ports]})",
              reply == "OK" and len(placed) == len(node_ports)
              and all(s == "up" and n > 0 for s, n in placed.values())
              and sum(n for _, n in placed.values()) == len(users),
              f"reply: {reply!r}", *lines[:6])

        a, b = users[0], users[1]
        talk.expect(f"REGISTER {a} other", "KO user exists")
        talk.expect(f"LOGIN {b} wrong", "KO wrong username or password")
        talk.expect(f"LOGIN {prefix}nobody pw", "KO wrong username or password")
        old = ck[b]
        ck[b] = cookie_of(talk.expect(f"LOGIN {b} {pw[b]}", cookie_re))
        talk.expect(f"COUNT {b} {old}", "KO not logged in")
        talk.expect(f"COUNT {b} {ck[b]}", "COUNTED 0")
        talk.verdict(f"{label} REGISTER taken, LOGIN wrong and right, the "
                     "old cookie stops working")

        # Each user stores one text to itself and one to the next user.
        boxes = {u: [] for u in users}
        for i, u in enumerate(users):
            to = users[(i + 1) % len(users)]
            for target, text in ((u, f"self note of {u}"),
                                 (to, f"from {u} to {to},  two  spaces")):
                talk.expect(f"MESSAGE {text} {ck[u]}", "OK")
                talk.expect(f"STORE {target} {ck[u]}", "OK")
                boxes[target].append(text)
        talk.verdict(f"{label} MESSAGE and STORE to self and to another "
                     f"user, for all {len(users)} users")
        for u in users:
            talk.expect(f"COUNT {u} {ck[u]}", f"COUNTED {len(boxes[u])}")
            for text in boxes[u]:
                talk.expect(f"GETMSG {u} {ck[u]}", f"OK {text}")
                talk.expect(f"GETMSG {u} {ck[u]}", f"OK {text}")
                talk.expect(f"DELMSG {u} {ck[u]}", "OK")
            talk.expect(f"GETMSG {u} {ck[u]}", "KO mailbox empty")
            talk.expect(f"DELMSG {u} {ck[u]}", "KO mailbox empty")
            talk.expect(f"COUNT {u} {ck[u]}", "COUNTED 0")
        talk.verdict(f"{label} COUNT, GETMSG (oldest first, it stays) and "
                     "DELMSG on every mailbox, then 'KO mailbox empty'")

        for i, u in enumerate(users):
            other = users[(i + 5) % len(users)]
            for cmd in ("COUNT", "GETMSG", "DELMSG"):
                talk.expect(f"{cmd} {other} {ck[u]}", "KO not your mailbox")
            talk.expect(f"COUNT {prefix}nobody {ck[u]}", "KO not your mailbox")
            talk.expect(f"STORE {other} {ck[u]}", "KO nothing to store")
            talk.expect(f"MESSAGE lost? {ck[u]}", "OK")
            talk.expect(f"STORE {prefix}nobody {ck[u]}", "KO no such user")
            talk.expect(f"STORE {u} {ck[u]}", "OK")  # it stayed on the IMQ
            talk.expect(f"GETMSG {u} {ck[u]}", "OK lost?")
            talk.expect(f"DELMSG {u} {ck[u]}", "OK")
        talk.verdict(f"{label} 'KO not your mailbox', 'KO nothing to store' "
                     "and 'KO no such user' (the message stays on the IMQ)")

        for u in users[:4]:
            talk.expect(f"LOGOUT {ck[u]}", "OK")
            talk.expect(f"LOGOUT {ck[u]}", "KO not logged in")
            talk.expect(f"MESSAGE late {ck[u]}", "You should log in first.")
            for cmd in ("STORE", "COUNT", "GETMSG", "DELMSG"):
                talk.expect(f"{cmd} {u} {ck[u]}", "KO not logged in")
            ck[u] = cookie_of(talk.expect(f"LOGIN {u} {pw[u]}", cookie_re))
            talk.expect(f"COUNT {u} {ck[u]}", "COUNTED 0")
        talk.verdict(f"{label} LOGOUT, then 'KO not logged in' and 'You "
                     "should log in first.', LOGIN again")
        return ck
    finally:
        talk.close()


def case_commands(server, tmp, cleanup, client, cluster):
    """(1) A front and 2 nodes: every command."""
    a, b = free_port(), free_port()
    nodes = [start_node(server, tmp, cleanup, "c1-nodeA", a),
             start_node(server, tmp, cleanup, "c1-nodeB", b)]
    if any(n.port is None for n in nodes):
        return
    front = start_front(server, tmp, cleanup, "c1-front", [a, b],
                        data_dir=os.path.join(tmp, "c1-front.data"))
    if not check("(1) the front starts and logs both nodes up",
                 front.port is not None and all(
                     f"node {addr(p)} up: " in front.log() for p in (a, b)),
                 f"exit status: {front.proc.poll()}", *front.log_tail()):
        return
    cluster.update(ports=[a, b], nodes=nodes, front=front,
                   front_data=os.path.join(tmp, "c1-front.data"),
                   node_data=[os.path.join(tmp, "c1-nodeA"),
                              os.path.join(tmp, "c1-nodeB")])
    cluster["cookies"] = exercise_commands("(1)", front, [a, b], "u")
    script = b"register cli0 pw\nsend cli0 via  the client\ncount\nget\n" \
        b"del\ncount\n"
    try:
        r = subprocess.run([client, "--port", str(front.port)], input=script,
                           capture_output=True, timeout=WAIT_S,
                           preexec_fn=die_with_parent)
        status, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        status, out, err = None, e.stdout, e.stderr
    check("(1) smsp-client, scripted against the front: register, send, "
          "count, get, del", status == 0 and out ==
          b"registered and logged in as cli0\nsent to cli0\n1\n"
          b"via  the client\ndeleted\n0\n",
          f"exit status: {status}", f"stdout: {out!r}", f"stderr: {err!r}")
    # cli0 is on a node too: (3) and (4) count it with the others.
    cluster["passwords"] = {u: f"pw{u[1:]}" for u in cluster["cookies"]}
    if status == 0:
        talk = Talk(front.port)
        try:
            cluster["cookies"]["cli0"] = cookie_of(talk.ask("LOGIN cli0 pw"))
            cluster["passwords"]["cli0"] = "pw"
        finally:
            talk.close()
    check("(1) the front and both nodes are still running",
          front.alive() and all(n.alive() for n in nodes),
          f"front: {front.proc.poll()}",
          f"nodes: {[n.proc.poll() for n in nodes]}")


# -- (2) a scripted session: single server and cluster -----------------------

SCRIPT = [
    "REGISTER alice pw1",
    "REGISTER bob pw2",
    "REGISTER carol pw3",
    "REGISTER alice other",
    "REGISTER bad_name pw",
    "REGISTER dave bad\x7fpw",
    "REGISTER dave bad pw",
    "LOGIN alice wrong",
    "LOGIN nobody pw1",
    "LOGIN alice pw1",
    "COUNT alice {old_alice}",
    "COUNT alice {alice}",
    "GETMSG alice {alice}",
    "DELMSG alice {alice}",
    "STORE bob {alice}",
    "MESSAGE hello  bob,  lunch? {alice}",
    "STORE bob {alice}",
    "MESSAGE note to self {alice}",
    "STORE alice {alice}",
    "MESSAGE for nobody {alice}",
    "STORE nobody {alice}",
    "STORE carol {alice}",
    "MESSAGE hi alice {bob}",
    "MESSAGE second for alice {bob}",
    "STORE alice {bob}",
    "STORE alice {bob}",
    "COUNT bob {bob}",
    "COUNT alice {bob}",
    "GETMSG alice {bob}",
    "DELMSG alice {bob}",
    "COUNT nobody {bob}",
    "GETMSG bob {bob}",
    "DELMSG bob {bob}",
    "GETMSG bob {bob}",
    "DELMSG bob {bob}",
    "COUNT alice {alice}",
    "GETMSG alice {alice}",
    "DELMSG alice {alice}",
    "getmsg alice {alice}",
    "COUNT carol {carol}",
    "GETMSG carol {carol}",
    "MESSAGE unstored text {carol}",
    "MESSAGE " + "x" * 17000 + " {carol}",
    "MESSAGE {carol}",
    "DUMP",
    "LOGOUT {bob}",
    "LOGOUT {bob}",
    "MESSAGE late {bob}",
    "STORE alice {bob}",
    "COUNT bob {bob}",
    "GETMSG bob {bob}",
    "DELMSG bob {bob}",
    "LOGIN bob pw2",
    "COUNT bob {bob}",
    "FROB",
    "",
    "   ",
    "REGISTER",
    "LOGIN alice",
    "LOGOUT",
    "STORE",
    "COUNT alice",
    "GETMSG",
    "DELMSG alice",
    "DUMP extra",
    "Count Alice {alice}",
    "COUNT alice {alice}",
]


def run_script(port):
    """The SCRIPT on one connection, each `{user}` / `{old_user}` replaced by
    the cookie the server gave that user last / before: the transcript
    `request => reply` with every cookie written <cookie>."""
    cookies, old = {}, {}
    client = connect(port)
    transcript = []
    try:
        for template in SCRIPT:
            names = dict({u: c for u, c in cookies.items()},
                         **{f"old_{u}": c for u, c in old.items()})
            request = template.format(**names) if "{" in template \
                else template
            reply = client.ask(request)
            words = template.split()
            if words[:1] and words[0].upper() in ("REGISTER", "LOGIN") \
                    and len(words) == 3 and cookie_of(reply):
                user = words[1]
                if user in cookies:
                    old[user] = cookies[user]
                cookies[user] = cookie_of(reply)
            shown = template if len(template) < 100 else \
                template[:40] + "..." + template[-10:]
            transcript.append(f"{shown} => "
                              + ("<no reply>" if reply is None
                                 else COOKIE.sub("<cookie>", reply)))
            if reply is None:
                break
    finally:
        client.close()
    return transcript


def case_same_replies(server, tmp, cleanup):
    """(2) The scripted session against a single server and a cluster."""
    single = bb.Server(server, tmp, "c2-single", data_dir=os.path.join(
        tmp, "c2-single.data"), args=["--dump-interval", "0"])
    cleanup.append(single.kill)
    if not check("(2) a single server (no --mailbox-node) starts",
                 single.port is not None, *single.log_tail()):
        return
    a, b = free_port(), free_port()
    nodes = [start_node(server, tmp, cleanup, "c2-nodeA", a),
             start_node(server, tmp, cleanup, "c2-nodeB", b)]
    front = start_front(server, tmp, cleanup, "c2-front", [a, b],
                        ["--dump-interval", "0"])
    if not check("(2) a front with 2 nodes starts", front.port is not None
                 and all(n.port for n in nodes), *front.log_tail()):
        return
    want = run_script(single.port)
    got = run_script(front.port)
    diff = [f"line {i + 1}: single {w!r} / cluster {g!r}"
            for i, (w, g) in enumerate(zip(want, got)) if w != g]
    check(f"(2) the scripted session ({len(SCRIPT)} requests) gets "
          "byte-identical replies (cookies normalized) from a single server "
          "and from the cluster",
          len(want) == len(SCRIPT) and want == got, *diff[:10],
          f"single answered {len(want)}, cluster {len(got)}")
    check("(2) the transcript has no 'KO mailbox unavailable' or 'KO internal "
          "error'", not [t for t in got if UNAVAILABLE in t
                         or "internal error" in t],
          *[t for t in got if "KO" in t][:5])
    kinds = ("totals:", "imq:", "mailbox", "mailboxes:")
    d_single = dump_lines(single, kinds)
    d_front = dump_lines(front, kinds)
    # The nodes list their mailboxes with mail, each line naming its node;
    # a single server lists every account's, empty ones too.
    def listed(lines, strip_node):
        out = []
        for line in lines:
            m = re.match(r"mailbox (\S+)( \(node [^)]*\))?: (.*)$", line)
            if m and (m.group(2) is not None) == strip_node \
                    and not m.group(3).startswith("0 message"):
                out.append(f"mailbox {m.group(1)}: {m.group(3)}")
        return sorted(out)
    boxes_single = listed(d_single, False)
    boxes_front = listed(d_front, True)
    imq = [line for line in d_single if line.startswith("imq:")]
    check("(2) the cluster's DUMP lists the same IMQ and the same mailboxes "
          "(from the nodes) as a single server's",
          imq and imq == [line for line in d_front
                          if line.startswith("imq:")]
          and boxes_single and boxes_single == boxes_front,
          *[f"single: {line}" for line in d_single[:8]],
          *[f"cluster: {line}" for line in d_front[:8]])
    _, _, node_lines = placed_per_node(front, [a, b])
    check("(2) the nodes are still up and running",
          all(n.alive() for n in nodes) and len(node_lines) == 2
          and all(": up," in line for line in node_lines), *node_lines)
    stop_all("(2)", [single, front], nodes)


# -- (3) restarts and (4) the node list --------------------------------------

def snapshot(talk, cookies):
    """{user: (COUNT reply, GETMSG reply)}."""
    return {u: (talk.ask(f"COUNT {u} {c}"), talk.ask(f"GETMSG {u} {c}"))
            for u, c in sorted(cookies.items())}


def login_all(talk, passwords):
    return {u: cookie_of(talk.ask(f"LOGIN {u} {pw}"))
            for u, pw in passwords.items()}


def case_restarts(server, tmp, cleanup, cluster):
    """(3) Mail survives a front restart and a node restart."""
    if not cluster.get("cookies"):
        check("(3) runs: needs the cluster of (1)", False)
        return
    a, b = cluster["ports"]
    front = cluster["front"]
    users = sorted(cluster["cookies"])
    talk = Talk(front.port)
    try:
        ck = cluster["cookies"]
        for i, u in enumerate(users):
            sender = users[(i + 1) % len(users)]
            for k in range(i % 3 + 1):
                talk.expect(f"MESSAGE keep {u} #{k} {ck[sender]}", "OK")
                talk.expect(f"STORE {u} {ck[sender]}", "OK")
        talk.expect(f"MESSAGE still on the IMQ {ck[users[0]]}", "OK")
        if not talk.verdict(f"(3) mail stored for {len(users)} users (1 to 3 "
                            "each)"):
            return
        before = snapshot(talk, ck)
        check("(3) COUNT and GETMSG answer for every user",
              all(c.startswith("COUNTED ") and g.startswith("OK ")
                  for c, g in before.values()), *map(str, before.items()))
    finally:
        talk.close()

    status = front.stop()
    check("(3) the front stops on SIGTERM with exit 0", status == 0,
          f"exit status: {status}", *front.log_tail())
    front = start_front(server, tmp, cleanup, "c3-front", [a, b],
                        data_dir=cluster["front_data"])
    cluster["front"] = front
    if not check("(3)/(4) the front starts again with the same node list "
                 "and logs both nodes up",
                 front.port is not None and all(
                     f"node {addr(p)} up: " in front.log() for p in (a, b)),
                 f"exit status: {front.proc.poll()}", *front.log_tail()):
        return
    talk = Talk(front.port)
    try:
        ck = login_all(talk, cluster["passwords"])
        after = snapshot(talk, ck)
        check("(3) after the front's restart COUNT and GETMSG return the same "
              "for every user", after == before,
              *[f"{u}: before {before[u]}, after {after[u]}"
                for u in users if before[u] != after.get(u)][:6])
        talk.expect(f"STORE {users[0]} {ck[users[0]]}", "OK")
        talk.expect(f"DELMSG {users[0]} {ck[users[0]]}", "OK")
        talk.expect(f"GETMSG {users[0]} {ck[users[0]]}",
                    "OK still on the IMQ")
        talk.expect(f"DELMSG {users[0]} {ck[users[0]]}", "OK")
        talk.expect(f"MESSAGE keep {users[0]} #0 {ck[users[1]]}", "OK")
        talk.expect(f"STORE {users[0]} {ck[users[1]]}", "OK")
        talk.verdict("(3) the IMQ message survived the front's restart too")
        _, placed, lines = placed_per_node(front, [a, b])
        cluster["placed"] = placed

        # Node A stops: its users get 'KO mailbox unavailable'.
        node_a, node_b = cluster["nodes"]
        status = node_a.stop()
        check("(3) node A stops on SIGTERM with exit 0", status == 0,
              f"exit status: {status}", *node_a.log_tail())
        wait_for(lambda: re.search(re.escape(f"node {addr(a)} ") +
                                   r"(down|unreachable)", front.log()))
        down = snapshot(talk, ck)
        unavailable = [u for u, (c, _) in down.items() if c == UNAVAILABLE]
        served = [u for u, (c, g) in down.items() if (c, g) == before[u]]
        check(f"(3) with node A stopped its {placed.get(a)} user(s) get "
              f"'{UNAVAILABLE}' (COUNT and GETMSG), the others are served "
              f"({len(unavailable)} unavailable, {len(served)} served)",
              placed.get(a) is not None
              and len(unavailable) == placed[a][1]
              and all(down[u] == (UNAVAILABLE, UNAVAILABLE)
                      for u in unavailable)
              and len(served) + len(unavailable) == len(users),
              *[f"{u}: {down[u]}" for u in users], *lines)
        check("(3) the front logs node A down or unreachable",
              re.search(re.escape(f"node {addr(a)} ") + r"(down|unreachable)",
                        front.log()), *front.log_tail())
        status = node_b.stop()
        check("(3) node B stops on SIGTERM with exit 0", status == 0,
              f"exit status: {status}", *node_b.log_tail())
        ups = {p: front.log().count(f"node {addr(p)} up: ") for p in (a, b)}
        nodes = [start_node(server, tmp, cleanup, "c3-nodeA", a,
                            data_dir=cluster["node_data"][0]),
                 start_node(server, tmp, cleanup, "c3-nodeB", b,
                            data_dir=cluster["node_data"][1])]
        cluster["nodes"] = nodes
        back = all(wait_for(lambda p=p: front.log().count(
            f"node {addr(p)} up: ") > ups[p]) for p in (a, b))
        check("(3) the front logs both restarted nodes up again", back,
              *front.log_tail())
        after = snapshot(talk, ck)
        check("(3) after both nodes' restart COUNT and GETMSG return the same "
              "for every user (same session)", after == before,
              *[f"{u}: before {before[u]}, after {after[u]}"
                for u in users if before[u] != after.get(u)][:6])
    finally:
        talk.close()


def case_node_list(server, tmp, cleanup, cluster):
    """(4) A changed node list refuses the start unless accepted."""
    if cluster.get("front") is None or cluster.get("front").port is None:
        check("(4) runs: needs the cluster of (1)", False)
        return
    a, b = cluster["ports"]
    users = sorted(cluster["cookies"])
    status = cluster["front"].stop()
    check("(4) the front stops on SIGTERM with exit 0", status == 0,
          f"exit status: {status}")
    c = free_port()
    refused = start_front(server, tmp, cleanup, "c4-swapped", [a, c],
                          data_dir=cluster["front_data"])
    err = refused.log()
    m = re.search(r"(\d+) of (\d+) users? would move", err)
    named = set(re.findall(r"\b(u\d+|cli0)\b", err))
    on_b = cluster.get("placed", {}).get(b, (None, 0))[1]
    check(f"(4) the front started with node B swapped for another refuses "
          f"(exit 1), saying how many users would move (at least the "
          f"{on_b} on B) and naming some",
          refused.port is None and refused.proc.returncode == 1
          and m is not None and int(m.group(2)) == len(users)
          and on_b <= int(m.group(1)) <= len(users)
          and named and named <= set(users)
          and LISTENING not in refused.out(),
          f"exit status: {refused.proc.returncode}", f"stderr: {err[-600:]!r}")

    single_data = os.path.join(tmp, "c4-single.data")
    single = bb.Server(server, tmp, "c4-single", data_dir=single_data)
    cleanup.append(single.kill)
    talk = Talk(single.port) if single.port else None
    if talk:
        for u in ("solo1", "solo2", "solo3"):
            talk.expect(f"REGISTER {u} pw", re.compile(r"OK [0-9a-f]{32,}"))
        talk.close()
        talk.verdict("(4) a single server (no nodes) gets 3 accounts")
    single.stop()
    refused = start_front(server, tmp, cleanup, "c4-had-none", [a, b],
                          data_dir=single_data)
    err = refused.log()
    check("(4) a data dir that has accounts and no nodes, started with "
          "nodes, refuses (exit 1) saying how many users would move",
          refused.port is None and refused.proc.returncode == 1
          and re.search(r"\d+ of 3 users? would move", err)
          and "solo" in err,
          f"exit status: {refused.proc.returncode}", f"stderr: {err[-600:]!r}")

    node_c = start_node(server, tmp, cleanup, "c4-nodeC", c)
    front = start_front(server, tmp, cleanup, "c4-accepted", [a, c],
                        ["--accept-node-change"],
                        data_dir=cluster["front_data"])
    ok = check("(4) with --accept-node-change the front starts with the "
               "swapped list and logs its nodes up",
               front.port is not None and all(
                   f"node {addr(p)} up: " in front.log() for p in (a, c)),
               f"exit status: {front.proc.poll()}", *front.log_tail())
    if ok:
        talk = Talk(front.port)
        try:
            ck = login_all(talk, cluster["passwords"])
            replies = snapshot(talk, ck)
            check("(4) every user is served after the accepted change",
                  all(cnt.startswith("COUNTED ") for cnt, _ in
                      replies.values()), *map(str, replies.items()))
        finally:
            talk.close()
    status = front.stop()
    check("(4) it stops on SIGTERM with exit 0", status == 0,
          f"exit status: {status}")
    again = start_front(server, tmp, cleanup, "c4-again", [a, c],
                        data_dir=cluster["front_data"])
    check("(4) the accepted list is recorded: the same list again starts "
          "without --accept-node-change",
          again.port is not None, f"exit status: {again.proc.poll()}",
          *again.log_tail())
    stop_all("(4)", [again], [node_c] + cluster["nodes"])


# -- (5) TLS -----------------------------------------------------------------

def make_ca(tmp):
    """A throwaway PKI in tmp/pki: ca.pem; front, node (signed by ca) and
    rogue (signed by another CA) .pem/.key. Returns the directory, or None
    with the failure checked."""
    d = os.path.join(tmp, "pki")
    os.makedirs(d)
    ext = os.path.join(d, "ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    steps = []
    for ca in ("ca", "rogue-ca"):
        steps.append(["req", "-x509", "-new"] + ec + [
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN=smsp test {ca}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    for name, ca in (("front", "ca"), ("node", "ca"), ("rogue", "rogue-ca")):
        steps.append(["req", "-new"] + ec + [
            "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}"])
        steps.append(["x509", "-req", "-in", f"{name}.csr", "-CA",
                      f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                      "-days", "2", "-extfile", "ext", "-out", f"{name}.pem"])
    for step in steps:
        r = subprocess.run(["openssl"] + step, cwd=d, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=WAIT_S)
        if r.returncode != 0:
            check("(5) openssl makes the test CA", False,
                  f"openssl {' '.join(step[:2])}: exit {r.returncode}",
                  r.stderr.decode(errors="replace")[-400:])
            return None
    return d


def tls_args(pki, name):
    return ["--node-cert", os.path.join(pki, f"{name}.pem"),
            "--node-key", os.path.join(pki, f"{name}.key"),
            "--node-ca", os.path.join(pki, "ca.pem")]


def exits_2(label, proc, words):
    proc.kill()  # if it started after all
    err = proc.log()
    check(f"{label}: exit 2 and stderr names {', '.join(words)}",
          proc.port is None and proc.proc.returncode == 2
          and all(w in err for w in words),
          f"exit status: {proc.proc.returncode}", f"stderr: {err[-400:]!r}")


def case_tls(server, tmp, cleanup):
    """(5) Mutual TLS between the front and its nodes."""
    port = free_port()
    opts = ["--node-cert", "--node-key", "--node-ca"]
    exits_2("(5) node --host 0.0.0.0 without TLS options",
            Node(server, tmp, "c5-open", port, ["--host", "0.0.0.0"]), opts)
    pki = make_ca(tmp)
    if pki is None:
        return
    full = tls_args(pki, "node")
    for n in (2, 4):
        given = full[:n]
        shown = " ".join(given[::2])
        exits_2(f"(5) node with only {shown}",
                Node(server, tmp, f"c5-part{n}", port, given), opts[n // 2:])
        exits_2(f"(5) node --host 0.0.0.0 with only {shown}",
                Node(server, tmp, f"c5-open{n}", port,
                     ["--host", "0.0.0.0"] + given), opts[n // 2:])
        front = bb.Server(server, tmp, f"c5-front-part{n}",
                          ["--mailbox-node", addr(port)]
                          + tls_args(pki, "front")[:n])
        cleanup.append(front.kill)
        exits_2(f"(5) front with only {shown}", front, opts[n // 2:])

    a, b = free_port(), free_port()
    nodes = [start_node(server, tmp, cleanup, "c5-nodeA", a, full),
             start_node(server, tmp, cleanup, "c5-nodeB", b, full)]
    if any(n.port is None for n in nodes):
        return
    front = start_front(server, tmp, cleanup, "c5-front", [a, b],
                        tls_args(pki, "front"))
    if not check("(5) a TLS front starts and logs both TLS nodes up",
                 front.port is not None and all(
                     f"node {addr(p)} up: " in front.log() for p in (a, b)),
                 f"exit status: {front.proc.poll()}", *front.log_tail()):
        return
    good = exercise_commands("(5) TLS cluster:", front, [a, b], "t")

    def unavailable_front(name, args, label):
        bad = start_front(server, tmp, cleanup, name, [a, b], args,
                          wait_up=())
        if not check(f"(5) {label}: the front starts", bad.port is not None,
                     f"exit status: {bad.proc.poll()}", *bad.log_tail()):
            return
        talk = Talk(bad.port)
        try:
            regs = [talk.ask(f"REGISTER {name[3:]}{i} pw") for i in range(4)]
            ck = [cookie_of(r) for r in regs]
            replies = [talk.ask(f"COUNT {name[3:]}{i} {c}")
                       for i, c in enumerate(ck) if c]
            replies += [talk.ask(f"MESSAGE hi {c}") for c in ck if c][:1]
            replies += [talk.ask(f"STORE {name[3:]}0 {c}") for c in ck if c][:1]
        finally:
            talk.close()
        check(f"(5) {label}: COUNT and STORE get '{UNAVAILABLE}'",
              len(replies) == 6 and replies[:4] == [UNAVAILABLE] * 4
              and replies[5] == UNAVAILABLE,
              f"REGISTER: {regs}", f"replies: {replies}")
        said = all(wait_for(lambda p=p: f"node {addr(p)} unreachable"
                            in bad.log()) for p in (a, b))
        check(f"(5) {label}: its log says both nodes are unreachable", said,
              *bad.log_tail())
        check(f"(5) {label}: the front and both nodes are still running",
              bad.alive() and all(n.alive() for n in nodes),
              f"front: {bad.proc.poll()}",
              f"nodes: {[n.proc.poll() for n in nodes]}")
        bad.stop()

    unavailable_front("c5-rogue", tls_args(pki, "rogue"),
                      "a front with a certificate of another CA")
    unavailable_front("c5-plain", [], "a front without TLS options")

    if good:
        talk = Talk(front.port)
        try:
            for u, c in sorted(good.items()):
                talk.expect(f"MESSAGE after the rogue {c}", "OK")
                talk.expect(f"STORE {u} {c}", "OK")
                talk.expect(f"COUNT {u} {c}", "COUNTED 1")
                talk.expect(f"GETMSG {u} {c}", "OK after the rogue")
        finally:
            talk.close()
        talk.verdict("(5) the nodes keep serving the good TLS front")
    stop_all("(5)", [front], nodes)


# -- (6) version mismatch ----------------------------------------------------

def case_version(server, tmp, cleanup):
    """(6) A node of another version."""
    a, b = free_port(), free_port()
    nodes = [start_node(server, tmp, cleanup, "c6-nodeA", a),
             start_node(server, tmp, cleanup, "c6-nodeB", b,
                        env={"SMSP_ACTORS_TEST_VERSION": "9.9.9"})]
    if any(n.port is None for n in nodes):
        return
    front = start_front(server, tmp, cleanup, "c6-front", [a, b], wait_up=[a])
    if not check("(6) the front starts and logs node A up",
                 front.port is not None
                 and f"node {addr(a)} up: " in front.log(),
                 f"exit status: {front.proc.poll()}", *front.log_tail()):
        return
    m = re.search(re.escape(f"node {addr(a)} up: ") + r"smsp-actors (\S+?),",
                  front.log())
    version = m.group(1) if m else "?"
    line = wait_for(lambda: re.search(
        re.escape(f"node {addr(b)} unreachable") + r".*", front.log()))
    line = line.group(0) if line else ""
    check(f"(6) the front logs node B unreachable naming both versions "
          f"(9.9.9 and {version})", "9.9.9" in line and version in line
          and version != "9.9.9", f"line: {line!r}", *front.log_tail())
    node_log = wait_for(lambda: re.search(
        r"node: refused a front: version mismatch.*", nodes[1].log()))
    node_log = node_log.group(0) if node_log else ""
    check("(6) node B logs it refused the front, naming both versions",
          "9.9.9" in node_log and version in node_log,
          f"line: {node_log!r}", *nodes[1].log_tail())

    users = [f"v{i}" for i in range(16)]
    talk = Talk(front.port)
    try:
        ck = {u: cookie_of(talk.ask(f"REGISTER {u} pw")) for u in users}
        replies = {u: (talk.ask(f"MESSAGE m {c}"), talk.ask(f"STORE {u} {c}"),
                       talk.ask(f"COUNT {u} {c}"))
                   for u, c in ck.items() if c}
    finally:
        talk.close()
    _, placed, lines = placed_per_node(front, [a, b])
    unavailable = [u for u, r in replies.items() if r[1:] ==
                   (UNAVAILABLE, UNAVAILABLE)]
    served = [u for u, r in replies.items() if r == ("OK", "OK", "COUNTED 1")]
    on_b = placed.get(b, (None, -1))[1]
    check(f"(6) node B's users get '{UNAVAILABLE}' for STORE and COUNT, "
          f"node A's are served ({len(unavailable)} unavailable, "
          f"{len(served)} served, {on_b} placed on B)",
          len(ck) == len(users) and all(ck.values())
          and len(unavailable) == on_b and on_b > 0
          and len(served) == len(users) - on_b,
          *[f"{u}: {r}" for u, r in replies.items()][:16], *lines)
    check("(6) the front and both nodes are still running",
          front.alive() and all(n.alive() for n in nodes),
          f"front: {front.proc.poll()}",
          f"nodes: {[n.proc.poll() for n in nodes]}")
    stop_all("(6)", [front], nodes)


def main(binaries, tmp, cleanup):
    server = binaries[0]
    cluster = {}
    for case, args in ((case_commands, (binaries[1], cluster)),
                       (case_same_replies, ()),
                       (case_restarts, (cluster,)),
                       (case_node_list, (cluster,)),
                       (case_tls, ()),
                       (case_version, ())):
        run_case(case.__name__, case, server, tmp, cleanup, *args)


if __name__ == "__main__":
    sys.exit(run(main, "smsp-cluster.", ("SERVER_BIN", "CLIENT_BIN")))
