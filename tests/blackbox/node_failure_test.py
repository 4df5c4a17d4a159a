#!/usr/bin/env python3
# Black-box test: mailbox nodes that die, freeze and come back, and a front
# that restarts, as separate processes of the built smsp-actors.
"""Usage: node_failure_test.py SERVER_BIN

Every case runs its own front (`smsp-actors --mailbox-node A --mailbox-node
B`) and two nodes (`smsp-actors node`) on free ports with data dirs of their
own. Users are picked two per node (the per-node "user(s) placed" figures of
DUMP, after each REGISTER).

(1) kill -9 of one node under load: four client threads for 5 s, each its
    own user, looping MESSAGE <unique text> + STORE to itself, now and then
    COUNT, GETMSG and DELMSG. The users of the other node see no error at
    all; those of the dead node get `KO mailbox unavailable`, every request
    is answered within the hang bound. The node restarted on its port and
    data dir: service resumes, and each mailbox holds every acknowledged
    text exactly once, in acknowledgement order, plus at most once each a
    text whose STORE got `KO mailbox unavailable`, and nothing else. Then
    STOREs until `KO nothing to store` empty the IMQ: every posted text is
    delivered exactly once (never both, never neither).
(2) The same with SIGSTOP of the node, then SIGCONT.
(3) One node restarted three times in a row on the same port (a new process,
    so a new CAF node id) while the front keeps running: SIGTERM and an
    immediate restart, kill -9 and an immediate restart (the front may
    still believe the old connection alive), kill -9 and a restart once the
    front saw it down. Each time the front reconnects, the other node's
    users are unaffected, and the mail is intact.
(4) The front stopped under load, by SIGTERM and then by kill -9, while the
    nodes keep running: the new front reconnects to both nodes and every
    acknowledged STORE is there exactly once.
(5) A node down when the front starts: the front starts, that node's users
    get `KO mailbox unavailable`, the others are served; once the node
    starts, its users are served too.

Timeouts are hang detectors only: a slow machine does not fail the test.
The measured times (kill to first KO, longest reply, time to resume) are
printed, not checked.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blackbox_support as bb  # noqa: E402
from blackbox_support import (WAIT_S, check, die_with_parent,  # noqa: E402
                              free_port, read_file, run, run_case,
                              wait_for)

# A request unanswered this long is a hang.
REPLY_S = 15 * max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR", "1")))
UNAVAILABLE = "KO mailbox unavailable"
NODE_LISTENING = "smsp-actors node listening on "
LOAD_S = 5.0
# --node-timeout of the fronts and nodes: twice the default, so that a busy
# machine delaying a heartbeat of a healthy node does not fail the test;
# times SMSP_TEST_TIME_FACTOR, which tests/sanitize.sh sets for the slower
# sanitized build (the times printed are then that much longer).
NODE_TIMEOUT = str(2 * max(1, int(os.environ.get("SMSP_TEST_TIME_FACTOR",
                                                  "1"))))
FAULT_AT_S = 2.0


def elapsed(t0):
    return time.monotonic() - t0


class Node:
    """`smsp-actors node` on a fixed port and data dir. Each start() is a new
    process (a new CAF node id), logging to tmp/NAME.K.err."""

    def __init__(self, binary, tmp, name):
        self.binary = binary
        self.tmp = tmp
        self.name = name
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.data = os.path.join(tmp, name + ".data")
        self.proc = None
        self.starts = 0
        self.logs = []

    def start(self):
        """Starts a new process; True once it printed its listening line."""
        self.starts += 1
        base = os.path.join(self.tmp, f"{self.name}.{self.starts}")
        self.out_path = base + ".out"
        self.logs.append(base + ".err")
        with open(self.out_path, "wb") as out, \
                open(base + ".err", "wb") as err:
            self.proc = subprocess.Popen(
                [self.binary, "node", "--port", str(self.port), "--data-dir",
                 self.data, "--node-timeout", NODE_TIMEOUT], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.tmp, preexec_fn=die_with_parent)
        return bool(wait_for(
            lambda: NODE_LISTENING in read_file(self.out_path)
            or self.proc.poll() is not None)) \
            and NODE_LISTENING in read_file(self.out_path)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait()

    def stop(self, timeout=WAIT_S):
        """SIGTERM: (exit status or None if it had to be killed, seconds)."""
        t0 = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None, elapsed(t0)
        return self.proc.returncode, elapsed(t0)

    def log(self):
        return "".join(read_file(p) for p in self.logs)

    def log_tail(self, n=12):
        out = []
        for k, path in enumerate(self.logs, 1):
            lines = read_file(path).splitlines()[-n:]
            out += [f"{self.name}#{k} log: {line}" for line in lines]
        return out


class Cluster:
    """A front and two nodes; `fronts` holds every front process started."""

    def __init__(self, binary, tmp, name, cleanup, start_nodes=(0, 1)):
        self.binary = binary
        self.tmp = tmp
        self.name = name
        self.cleanup = cleanup
        self.nodes = [Node(binary, tmp, f"{name}-node{i}") for i in (0, 1)]
        for node in self.nodes:
            cleanup.append(node.kill)
        self.ok = True
        for i in start_nodes:
            self.ok = check(f"{name}: node {i} starts", self.nodes[i].start(),
                            *self.nodes[i].log_tail()) and self.ok
        self.fronts = []
        self.front = None
        if self.ok:
            self.ok = self.start_front()

    def start_front(self):
        args = ["--dump-interval", "0", "--max-imq-per-user", "100000",
                "--node-timeout", NODE_TIMEOUT]
        for node in self.nodes:
            args += ["--mailbox-node", node.addr]
        t0 = time.monotonic()
        front = bb.Server(self.binary, self.tmp,
                          f"{self.name}-front{len(self.fronts) + 1}", args,
                          data_dir=os.path.join(self.tmp,
                                                self.name + "-front.data"))
        self.cleanup.append(front.kill)
        self.fronts.append(front)
        self.front = front
        return check(f"{self.name}: front {len(self.fronts)} starts "
                     f"({elapsed(t0):.2f} s)", front.port is not None,
                     f"exit status: {front.proc.poll()}", *front.log_tail())

    def details(self):
        out = []
        for k, front in enumerate(self.fronts, 1):
            # DUMP's listings (those of pick_users) say nothing here.
            lines = [line for line in front.log().splitlines()
                     if "DUMP" not in line or "DUMP node" in line]
            out += [f"front#{k} log: {line}" for line in lines[-15:]]
        for node in self.nodes:
            out += node.log_tail()
        return out

    def connect(self):
        return bb.Client(self.front.port, REPLY_S, text=True)

    def dump_placement(self, client):
        """{node address: users placed there}, from one DUMP run."""
        done = self.front.log().count("DUMP done")
        client.ask("DUMP")
        wait_for(lambda: self.front.log().count("DUMP done") > done)
        runs = self.front.log().split("DUMP done")
        block = runs[done] if len(runs) > done else ""
        return {addr: int(n) for addr, n in re.findall(
            r"DUMP node (\S+): \w+, (\d+) user\(s\) placed", block)}

    def pick_users(self, prefix, per_node=2):
        """Registers prefix0, prefix1, ... until `per_node` users are placed
        on each node: [[(user, cookie), ...] for node 0, same for node 1],
        or None."""
        picked = {node.addr: [] for node in self.nodes}
        client = self.connect()
        try:
            before = self.dump_placement(client)
            for i in range(64):
                user = f"{prefix}{i}"
                reply = client.ask(f"REGISTER {user} pw")
                if not (reply and reply.startswith("OK ")):
                    check(f"{self.name}: REGISTER {user}", False,
                          f"reply: {reply!r}", *self.details())
                    return None
                after = self.dump_placement(client)
                grown = [a for a in after if after[a] > before.get(a, 0)]
                before = after
                if len(grown) != 1:
                    check(f"{self.name}: DUMP shows where {user} is placed",
                          False, f"placed: {after}", *self.details())
                    return None
                if len(picked[grown[0]]) < per_node:
                    picked[grown[0]].append((user, reply[3:]))
                if all(len(v) == per_node for v in picked.values()):
                    return [picked[node.addr] for node in self.nodes]
        finally:
            client.close()
        check(f"{self.name}: 64 candidates give {per_node} users per node",
              False, f"placed: {picked}")
        return None


def kind(reply):
    if reply is None:
        return "none"
    if reply == UNAVAILABLE:
        return "unavailable"
    if reply == "OK" or reply.startswith(("OK ", "COUNTED ")):
        return "ok"
    return "other"


class Worker:
    """One user's load on its own connection: MESSAGE <unique text> + STORE
    to itself, every 4th round COUNT, GETMSG and DELMSG. Records every
    request (start time, command, reply, latency) and what each text
    became."""

    def __init__(self, port, user, cookie, tag):
        self.port = port
        self.user = user
        self.cookie = cookie
        self.tag = tag
        self.events = []
        self.posted = []        # MESSAGE answered OK
        self.unsure_post = set()  # MESSAGE unanswered
        self.acked = []         # STORE answered OK, in order
        self.maybe = set()      # STORE answered otherwise or not at all
        self.consumed = []      # GETMSG text removed by an OK DELMSG
        self.maybe_deleted = set()  # GETMSG text whose DELMSG was not OK
        self.client = None

    def ask(self, cmd, request):
        t0 = time.monotonic()
        try:
            reply = self.client.ask(request)
        except OSError:
            reply = None
        self.events.append((t0, cmd, reply, elapsed(t0)))
        return reply

    def run(self, stop):
        try:
            self.client = bb.Client(self.port, REPLY_S, text=True)
        except OSError as e:
            self.events.append((time.monotonic(), "connect", repr(e), 0.0))
            return
        try:
            i = 0
            while not stop.is_set():
                i += 1
                text = f"{self.tag}-{self.user}-{i}"
                reply = self.ask("MESSAGE", f"MESSAGE {text} {self.cookie}")
                if reply is None:
                    self.unsure_post.add(text)
                    return
                if reply != "OK":
                    continue
                self.posted.append(text)
                reply = self.ask("STORE", f"STORE {self.user} {self.cookie}")
                if reply == "OK":
                    self.acked.append(text)
                else:
                    self.maybe.add(text)
                    if reply is None:
                        return
                    continue
                if i % 4:
                    continue
                if self.ask("COUNT", f"COUNT {self.user} {self.cookie}") \
                        is None:
                    return
                reply = self.ask("GETMSG", f"GETMSG {self.user} {self.cookie}")
                if reply is None:
                    return
                if not reply.startswith("OK "):
                    continue
                first = reply[3:]
                reply = self.ask("DELMSG", f"DELMSG {self.user} {self.cookie}")
                if reply == "OK":
                    self.consumed.append(first)
                else:
                    self.maybe_deleted.add(first)
                    if reply is None:
                        return
        finally:
            self.client.close()


def run_load(port, users, tag, fault=None, fault_at=FAULT_AT_S,
             load_s=LOAD_S, until=None):
    """One Worker thread per (user, cookie) for `load_s`, and on while
    `until(workers)` is false (a slow machine may take longer to notice the
    fault), for at most 2 * REPLY_S more; `fault()` runs `fault_at` seconds
    in. Returns (workers, the fault's monotonic time)."""
    workers = [Worker(port, u, c, tag) for u, c in users]
    stop = threading.Event()
    start = time.monotonic()
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True)
               for w in workers]
    for t in threads:
        t.start()
    fault_time = None
    if fault is not None:
        time.sleep(max(0.0, start + fault_at - time.monotonic()))
        fault_time = time.monotonic()
        fault()
    time.sleep(max(0.0, start + load_s - time.monotonic()))
    if until is not None:
        wait_for(lambda: until(workers), timeout=2 * REPLY_S)
    stop.set()
    for t in threads:
        t.join(4 * REPLY_S)
    return workers, fault_time


def odd_events(workers, allowed):
    """Events whose reply kind is not in `allowed`, described."""
    return [f"{w.user}: {cmd} -> {reply!r} after {lat:.2f} s"
            for w in workers for (_, cmd, reply, lat) in w.events
            if kind(reply) not in allowed]


def summarize(label, workers):
    n = sum(len(w.events) for w in workers)
    acked = sum(len(w.acked) for w in workers)
    lat = max((e[3] for w in workers for e in w.events), default=0.0)
    print(f"    {label}: {n} requests, {acked} STOREs acknowledged, longest "
          f"reply {lat:.3f} s")
    return lat


def login(cluster, user):
    client = cluster.connect()
    try:
        reply = client.ask(f"LOGIN {user} pw")
    finally:
        client.close()
    return reply[3:] if reply and reply.startswith("OK ") else None


def wait_served(cluster, users, bound=WAIT_S):
    """Polls COUNT of each user until every one is answered COUNTED:
    (True, seconds) or (False, last replies)."""
    t0 = time.monotonic()
    last = {}
    pending = list(users)
    while pending and elapsed(t0) < bound:
        try:
            client = cluster.connect()
        except OSError as e:
            last["connect"] = repr(e)
            time.sleep(0.1)
            continue
        try:
            for user, cookie in list(pending):
                reply = client.ask(f"COUNT {user} {cookie}")
                last[user] = reply
                if reply and reply.startswith("COUNTED "):
                    pending.remove((user, cookie))
        except OSError as e:
            last["io"] = repr(e)
        finally:
            client.close()
        if pending:
            time.sleep(0.1)
    return (not pending), elapsed(t0), last


def drain_mailbox(client, user, cookie):
    """GETMSG + DELMSG until empty: (texts, None) or (texts, odd reply)."""
    texts = []
    for _ in range(100000):
        reply = client.ask(f"GETMSG {user} {cookie}")
        if reply == "KO mailbox empty":
            return texts, None
        if not (reply and reply.startswith("OK ")):
            return texts, f"GETMSG -> {reply!r}"
        got = client.ask(f"DELMSG {user} {cookie}")
        if got != "OK":
            return texts, f"DELMSG -> {got!r}"
        texts.append(reply[3:])
    return texts, "mailbox never empty"


def store_n(client, user, cookie, n):
    """Up to `n` STOREs, stopping at the first reply other than OK: the
    replies."""
    replies = []
    for _ in range(n):
        replies.append(client.ask(f"STORE {user} {cookie}"))
        if replies[-1] != "OK":
            break
    return replies


def dups(seq):
    seen = set()
    return sorted({t for t in seq if t in seen or seen.add(t)})


def verify_mail(cluster, label, workers, cookies=None):
    """Each worker's mailbox: the acknowledged texts exactly once in order,
    plus at most once each a text whose STORE was not acknowledged, nothing
    else. Then one STORE for each posted text not delivered yet empties the
    IMQ: every posted text is delivered exactly once (never both, never
    neither), and one STORE more answers `KO nothing to store`."""
    cookie_of = {w.user: (cookies or {}).get(w.user, w.cookie)
                 for w in workers}
    client = cluster.connect()
    try:
        for w in workers:
            cookie = cookie_of[w.user]
            drained, odd = drain_mailbox(client, w.user, cookie)
            seq = w.consumed + drained
            acked = set(w.acked)
            got = [t for t in seq if t in acked]
            want = [t for t in w.acked
                    if t not in w.maybe_deleted or t in seq]
            extra = [t for t in seq if t not in acked]
            stray = [t for t in extra if t not in w.maybe]
            check(f"{label}: {w.user}'s mailbox holds its {len(w.acked)} "
                  f"acknowledged texts exactly once in order, "
                  f"{len(extra)} unacknowledged one(s) at most once, "
                  f"nothing else",
                  odd is None and got == want and not dups(seq) and not stray,
                  f"odd reply: {odd}", f"duplicates: {dups(seq)[:10]}",
                  f"missing: {[t for t in want if t not in seq][:10]}",
                  f"out of order: {got != want and set(got) == set(want)}",
                  f"not posted+STOREd by it: {stray[:10]}",
                  f"got (last 10): {got[-10:]}",
                  f"want (last 10): {want[-10:]}", *cluster.details())
            left = [t for t in w.posted
                    if t not in seq and t not in w.maybe_deleted]
            stores = store_n(client, w.user, cookie, len(left))
            more, odd = drain_mailbox(client, w.user, cookie)
            everything = seq + more
            posted = set(w.posted)
            lost = [t for t in w.posted
                    if t not in everything and t not in w.maybe_deleted]
            unknown = [t for t in everything
                       if t not in posted and t not in w.unsure_post]
            check(f"{label}: {w.user}: {len(left)} STORE(s) deliver the "
                  f"{len(left)} posted text(s) still on the IMQ: each of its "
                  f"{len(w.posted)} posted texts is delivered exactly once",
                  stores == ["OK"] * len(left) and odd is None and not lost
                  and not unknown and not dups(everything),
                  f"STORE replies: {stores[-5:]}", f"odd reply: {odd}",
                  f"lost: {lost[:10]}",
                  f"duplicates: {dups(everything)[:10]}",
                  f"unknown: {unknown[:10]}", *cluster.details())
    finally:
        client.close()
    # One STORE more each, at once (so that a slow answer costs its time
    # once): the IMQ holds nothing of theirs now, but a MESSAGE cut off by a
    # kill may have been committed without its OK: each such text may still
    # be stored once (and is then checked to be one of them).
    finals = {}

    def final_store(w):
        t0 = time.monotonic()
        try:
            c = cluster.connect()
            try:
                cookie = cookie_of[w.user]
                reply = c.ask(f"STORE {w.user} {cookie}")
                late = 0
                while reply == "OK" and late < len(w.unsure_post):
                    late += 1
                    reply = c.ask(f"STORE {w.user} {cookie}")
                if late:
                    texts, odd = drain_mailbox(c, w.user, cookie)
                    if odd is not None or not set(texts) <= w.unsure_post \
                            or dups(texts):
                        reply = f"stored {texts} (odd: {odd})"
                finals[w.user] = (reply, elapsed(t0))
            finally:
                c.close()
        except OSError as e:
            finals[w.user] = (repr(e), elapsed(t0))

    threads = [threading.Thread(target=final_store, args=(w,), daemon=True)
               for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * REPLY_S)
    check(f"{label}: then STORE answers 'KO nothing to store' for each user "
          "(" + ", ".join(f"{u}: {lat:.3f} s"
                          for u, (_, lat) in sorted(finals.items())) + ")",
          all(finals.get(w.user, (None,))[0] == "KO nothing to store"
              for w in workers),
          f"replies: {finals}", *cluster.details())


def fault_case(binary, tmp, cleanup, label, name, fault, recover):
    """Cases 1 and 2: `fault(node)` at 2 s into a 5 s load, `recover(node)`
    after it, then the checks."""
    cl = Cluster(binary, tmp, name, cleanup)
    if not cl.ok:
        return
    picked = cl.pick_users(name[:2] + "u")
    if picked is None:
        return
    victim = cl.nodes[1]
    healthy_users, victim_users = picked[0], picked[1]
    print(f"    {label}: users {[u for u, _ in healthy_users]} on "
          f"{cl.nodes[0].addr}, {[u for u, _ in victim_users]} on "
          f"{victim.addr} (the faulty node)")
    workers, fault_time = run_load(
        cl.front.port, healthy_users + victim_users, name,
        fault=lambda: fault(victim),
        until=lambda ws: all(any(kind(e[2]) == "unavailable"
                                 for e in list(w.events)) for w in ws[2:]))
    healthy = workers[:2]
    hit = workers[2:]
    lat = summarize(label, workers)
    check(f"{label}: the users of the other node see no error at all",
          not odd_events(healthy, ("ok",)),
          *odd_events(healthy, ("ok",))[:10], *cl.details())
    check(f"{label}: every request of the faulty node's users is answered "
          f"(OK or '{UNAVAILABLE}') within {REPLY_S} s (longest reply "
          f"{lat:.3f} s)",
          not odd_events(hit, ("ok", "unavailable")),
          *odd_events(hit, ("ok", "unavailable"))[:10], *cl.details())
    kos = [t + lat for w in hit for (t, _, r, lat) in w.events
           if kind(r) == "unavailable"]
    firsts = [min((t + lat for (t, _, r, lat) in w.events
                   if kind(r) == "unavailable"), default=None) for w in hit]
    if kos:
        print(f"    {label}: first '{UNAVAILABLE}' "
              f"{min(kos) - fault_time:.3f} s after the fault; per user: "
              + ", ".join(f"{f - fault_time:.3f} s" if f else "never"
                          for f in firsts))
    check(f"{label}: both users of the faulty node get '{UNAVAILABLE}'",
          all(f is not None for f in firsts),
          f"first per user: {firsts}", *cl.details())
    if not check(f"{label}: the node is back", recover(victim),
                 *cl.details()):
        return
    ok, took, last = wait_served(cl, victim_users)
    check(f"{label}: service resumes for the faulty node's users "
          f"({took:.2f} s after the node came back, "
          f"{elapsed(fault_time):.2f} s after the fault)", ok,
          f"last replies: {last}", *cl.details())
    verify_mail(cl, label, workers)


def case_kill9(binary, tmp, cleanup):
    """(1) kill -9 of a node under load, restart on its port and data dir."""
    fault_case(binary, tmp, cleanup, "(1) kill -9", "c1",
               lambda node: node.kill(), lambda node: node.start())


def case_sigstop(binary, tmp, cleanup):
    """(2) SIGSTOP of a node under load, then SIGCONT."""
    def cont(node):
        node.signal(signal.SIGCONT)
        return node.alive()

    fault_case(binary, tmp, cleanup, "(2) SIGSTOP", "c2",
               lambda node: node.signal(signal.SIGSTOP), cont)


def case_node_restarts(binary, tmp, cleanup):
    """(3) one node restarted three times in a row while the front runs."""
    cl = Cluster(binary, tmp, "c3", cleanup)
    if not cl.ok:
        return
    picked = cl.pick_users("c3u")
    if picked is None:
        return
    node = cl.nodes[1]
    users = picked[0] + picked[1]
    workers = {u: Worker(cl.front.port, u, c, "c3") for u, c in users}

    def store_round(k):
        """One text more for every user; True if all answered OK."""
        client = cl.connect()
        bad = []
        try:
            for u, c in users:
                text = f"c3-{u}-round{k}"
                replies = [client.ask(f"MESSAGE {text} {c}"),
                           client.ask(f"STORE {u} {c}")]
                w = workers[u]
                if replies == ["OK", "OK"]:
                    w.posted.append(text)
                    w.acked.append(text)
                else:
                    bad.append(f"{u}: {replies}")
                    if replies[0] == "OK":
                        w.posted.append(text)
                        w.maybe.add(text)
        finally:
            client.close()
        return bad

    bad = store_round(0)
    check("(3) before the restarts every STORE is acknowledged", not bad,
          *bad, *cl.details())
    rounds = [("SIGTERM, immediate restart", "term", False),
              ("kill -9, immediate restart", "kill", False),
              ("kill -9, restart once the front saw it down", "kill", True)]
    for k, (what, how, wait_down) in enumerate(rounds, 1):
        label = f"(3) restart {k} ({what})"
        downs = cl.front.log().count(f"node {node.addr} down")
        ups = cl.front.log().count(f"node {node.addr} up")
        t0 = time.monotonic()
        if how == "term":
            status, took = node.stop(REPLY_S)
            check(f"{label}: the node stops on SIGTERM with exit 0 "
                  f"({took:.2f} s)", status == 0,
                  f"exit status: {status} (None: still running after "
                  f"{REPLY_S} s, then killed)", *node.log_tail())
        else:
            node.kill()
        if wait_down:
            seen = wait_for(lambda: cl.front.log().count(
                f"node {node.addr} down") > downs)
            check(f"{label}: the front logs the node down "
                  f"({elapsed(t0):.2f} s after the kill)", seen,
                  *cl.details())
        if not check(f"{label}: a new node process starts on port "
                     f"{node.port}", node.start(), *node.log_tail()):
            return
        t1 = time.monotonic()
        ok, took, last = wait_served(cl, picked[1])
        check(f"{label}: the front serves the node's users again "
              f"({took:.2f} s after the new process listened)", ok,
              f"last replies: {last}", *cl.details())
        came_up = wait_for(lambda: cl.front.log().count(
            f"node {node.addr} up") > ups, timeout=5)
        print(f"    {label}: served {elapsed(t1):.3f} s after the new "
              f"process listened; front logged 'up' again: {bool(came_up)}")
        client = cl.connect()
        try:
            counts = {u: client.ask(f"COUNT {u} {c}") for u, c in users}
        finally:
            client.close()
        want = {u: f"COUNTED {len(workers[u].acked)}" for u, _ in users}
        check(f"{label}: every mailbox holds its acknowledged mail (COUNT)",
              counts == want, f"got: {counts}", f"want: {want}",
              *cl.details())
        bad = store_round(k)
        check(f"{label}: then every STORE is acknowledged", not bad, *bad,
              *cl.details())
    verify_mail(cl, "(3) after 3 restarts", list(workers.values()))


def front_case(binary, tmp, cleanup, label, name, stop_front):
    """(4) the front stopped under load by `stop_front(front)`."""
    cl = Cluster(binary, tmp, name, cleanup)
    if not cl.ok:
        return
    picked = cl.pick_users(name + "u")
    if picked is None:
        return
    old = cl.front
    workers, fault_time = run_load(old.port, picked[0] + picked[1], name,
                                   fault=lambda: stop_front(old),
                                   load_s=3.0, fault_at=1.5)
    summarize(label, workers)
    check(f"{label}: before the front stopped no request failed",
          not odd_events(workers, ("ok", "none")),
          *odd_events(workers, ("ok", "none"))[:10], *cl.details())
    t0 = time.monotonic()
    if not cl.start_front():
        return
    came = wait_for(lambda: all(f"node {n.addr} up" in cl.front.log()
                                for n in cl.nodes))
    check(f"{label}: the new front connects to both nodes "
          f"({elapsed(t0):.2f} s after its start)", came, *cl.details())
    cookies = {w.user: login(cl, w.user) for w in workers}
    check(f"{label}: every user logs in again", all(cookies.values()),
          f"cookies: {cookies}", *cl.details())
    ok, took, last = wait_served(cl, list(cookies.items()))
    check(f"{label}: every user is served ({took:.2f} s)", ok,
          f"last replies: {last}", *cl.details())
    print(f"    {label}: served {elapsed(t0):.3f} s after the new front "
          "started")
    verify_mail(cl, label, workers, cookies)


def case_front_sigterm(binary, tmp, cleanup):
    """(4a) the front stopped by SIGTERM under load."""
    def stop(front):
        status = front.stop()
        check("(4a) SIGTERM: the front exits with 0", status == 0,
              f"exit status: {status}", *front.log_tail())

    front_case(binary, tmp, cleanup, "(4a) front SIGTERM", "c4a", stop)


def case_front_kill9(binary, tmp, cleanup):
    """(4b) the front killed by kill -9 under load."""
    front_case(binary, tmp, cleanup, "(4b) front kill -9", "c4b",
               lambda front: front.kill())


def case_node_down_at_start(binary, tmp, cleanup):
    """(5) a node down when the front starts."""
    cl = Cluster(binary, tmp, "c5", cleanup, start_nodes=(0,))
    if not cl.ok:
        return
    picked = cl.pick_users("c5u")
    if picked is None:
        return
    up_users, down_users = picked
    w = {u: Worker(cl.front.port, u, c, "c5")
         for u, c in up_users + down_users}
    client = cl.connect()
    try:
        replies = {}
        for u, c in up_users + down_users:
            text = f"c5-{u}-early"
            t0 = time.monotonic()
            r = [client.ask(f"MESSAGE {text} {c}"),
                 client.ask(f"STORE {u} {c}"), client.ask(f"COUNT {u} {c}")]
            replies[u] = (r, elapsed(t0))
            if r[0] == "OK":
                w[u].posted.append(text)
                (w[u].acked.append if r[1] == "OK" else w[u].maybe.add)(text)
    finally:
        client.close()
    check("(5) the users of the running node are served",
          all(replies[u][0] == ["OK", "OK", "COUNTED 1"] for u, _ in up_users),
          f"replies: {replies}", *cl.details())
    check(f"(5) the users of the node that is down get '{UNAVAILABLE}' "
          "for STORE and COUNT ("
          + ", ".join(f"{replies[u][1]:.3f} s" for u, _ in down_users) + ")",
          all(replies[u][0] == ["OK", UNAVAILABLE, UNAVAILABLE]
              for u, _ in down_users),
          f"replies: {replies}", *cl.details())
    t0 = time.monotonic()
    if not check("(5) the node starts later", cl.nodes[1].start(),
                 *cl.nodes[1].log_tail()):
        return
    ok, took, last = wait_served(cl, down_users)
    check(f"(5) its users are served then ({took:.2f} s after it listened)",
          ok, f"last replies: {last}", *cl.details())
    print(f"    (5) served {elapsed(t0):.3f} s after the late node started")
    client = cl.connect()
    try:
        for u, c in up_users + down_users:
            text = f"c5-{u}-late"
            r = [client.ask(f"MESSAGE {text} {c}"),
                 client.ask(f"STORE {u} {c}")]
            if r[0] == "OK":
                w[u].posted.append(text)
                (w[u].acked.append if r[1] == "OK" else w[u].maybe.add)(text)
            check(f"(5) {u}: MESSAGE + STORE answer OK", r == ["OK", "OK"],
                  f"replies: {r}", *cl.details())
    finally:
        client.close()
    verify_mail(cl, "(5)", list(w.values()))


def main(binaries, tmp, cleanup):
    binary = binaries[0]
    for case in (case_kill9, case_sigstop, case_node_restarts,
                 case_front_sigterm, case_front_kill9,
                 case_node_down_at_start):
        t0 = time.monotonic()
        run_case(case.__doc__.split(")")[0] + ")", case, binary, tmp, cleanup)
        print(f"    ({case.__name__}: {elapsed(t0):.1f} s)")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(run(main, "smsp-node-failure-"))
