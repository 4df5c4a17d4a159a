#!/usr/bin/env python3
# Black-box test: the config file and honest command lines (issue 12 items 1
# and 2).
"""Usage: config_test.py SERVER_BIN CLIENT_BIN BENCH_BIN

The example config (docs/smsp-actors.conf.example) starts a server (its
port and data dir overridden on the command line); an unknown setting, a
bad value, a section and a repeated setting are refused (exit 2, naming the
file, the line and the setting); the command line wins over the file;
--print-config's output read back with --config prints the same; a node
reads its own file. --version of all three tools exits 0 with the project's
version (and CAF's for the server); CAF's --long-help and --dump-config
exit 0 without creating the log file or the data dir; a bad CAF option is
refused naming it; the client's and the bench's usage errors exit 2 and
their failures at run time 1.
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blackbox_support import (LISTENING, WAIT_S, Client,  # noqa: E402
                              Server, check, die_with_parent, free_port,
                              run)

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
EXAMPLE = os.path.join(SOURCE, "docs", "smsp-actors.conf.example")


def project_version():
    with open(os.path.join(SOURCE, "CMakeLists.txt")) as f:
        return re.search(r"project\(\S+ VERSION (\S+)", f.read()).group(1)


def call(argv, cwd, stdin=subprocess.DEVNULL):
    """Runs `argv` to its end: (status, stdout, stderr) as text."""
    proc = subprocess.run(argv, cwd=cwd, stdin=stdin, capture_output=True,
                          timeout=WAIT_S, preexec_fn=die_with_parent)
    return (proc.returncode, proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"))


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start(binary, tmp, name, args):
    """A server with `args` (after --port 0 --pwhash min --data-dir): its
    exit status (after SIGTERM if it started), stdout, stderr, and whether
    it listened."""
    srv = Server(binary, tmp, name, args)
    try:
        listened = srv.port is not None
        status = srv.stop() if listened else srv.proc.returncode
        return status, srv.out(), srv.log(), listened
    finally:
        srv.kill()


def check_example(binary, tmp):
    data = os.path.join(tmp, "example")
    status, out, err, listened = start(binary, tmp, "example",
                                       ["--config", EXAMPLE])
    check("the example config starts a server (port and data dir "
          "overridden on the command line), exit 0 on SIGTERM",
          listened and status == 0 and os.path.isdir(data),
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr: {err.strip()[-400:]!r}")


def check_refused(binary, tmp, label, text, line, key, node=False):
    path = write(os.path.join(tmp, "bad.conf"), text)
    if node:
        status, out, err = call([binary, "node", "--config", path,
                                 "--data-dir", os.path.join(tmp, "nd")], tmp)
    else:
        status, out, err, _ = start(binary, tmp, "refused",
                                    ["--config", path])
    where = f"{path}:{line}" if line else path
    check(f"{label} is refused (exit 2, stderr names {where} and {key!r}, "
          "no listening)",
          status == 2 and where in err and key in err
          and "listening" not in out,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr: {err.strip()[:400]!r}")


def print_config(binary, tmp, args):
    return call([binary] + args + ["--print-config"], tmp)


def check_print_config(binary, tmp):
    status, out, err = print_config(
        binary, tmp, ["--config", EXAMPLE, "--port", "0", "--data-dir",
                      os.path.join(tmp, "pc"), "--dump", "full"])
    check("--print-config exits 0 without starting (no data dir)",
          status == 0 and LISTENING not in out
          and not os.path.exists(os.path.join(tmp, "pc")),
          f"exit status: {status}", f"stderr: {err.strip()[:300]!r}")
    # The file says port 5000, dump summary, max-connections 1000; the
    # command line port 0 and dump full (the default).
    check("--print-config: the command line wins over the file, settings "
          "not at their default are marked",
          re.search(r"# not the default \(5000\)\nport = 0\n", out)
          and re.search(r"\ndump = \"full\"\n", out)
          and "# not the default (\"full\")\ndump" not in out
          and re.search(r"# not the default \(\d+\)\nmax-connections = 1000\n",
                        out)
          and "\nmailbox-idle = 60\n" in out
          and "# mailbox-node = (not set)" in out,
          f"output: {out!r}")
    first = write(os.path.join(tmp, "printed.conf"), out)
    status2, out2, err2 = print_config(binary, tmp, ["--config", first])
    check("--print-config's output read back with --config prints the same",
          status2 == 0 and out2 == out, f"exit status: {status2}",
          f"stderr: {err2.strip()[:300]!r}", f"first: {out!r}",
          f"second: {out2!r}")
    # Lists, flags and empty text read back too.
    args = ["--mailbox-node", "127.0.0.1:7001", "127.0.0.1:7002",
            "--accept-node-change", "--trusted-networks", "",
            "--log-file", os.path.join(tmp, "x.log")]
    status, out, err = print_config(binary, tmp, args)
    listed = write(os.path.join(tmp, "listed.conf"), out)
    status2, out2, err2 = print_config(binary, tmp, ["--config", listed])
    check("--print-config with a list, a flag and an empty text reads back "
          "the same",
          status == 0 and status2 == 0 and out2 == out
          and 'mailbox-node = ["127.0.0.1:7001", "127.0.0.1:7002"]' in out
          and "accept-node-change = true" in out
          and 'trusted-networks = ""' in out,
          f"exit status: {status}, {status2}",
          f"stderr: {err.strip()[:300]!r} {err2.strip()[:300]!r}",
          f"first: {out!r}", f"second: {out2!r}")


def check_override_starts(binary, tmp):
    """A file with a port taken: the command line's --port 0 wins, and the
    file's other settings apply."""
    path = write(os.path.join(tmp, "override.conf"),
                 "port = 1\nmax-connections = 3\ndata-dir = \"/nonexistent/"
                 "smsp\"\n")
    status, out, err, listened = start(binary, tmp, "override",
                                       ["--config", path])
    check("the command line overrides the file (port, data dir) and the "
          "file's other settings apply (3 connections at most)",
          listened and status == 0 and "at most 3 connections" in err,
          f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
          f"stderr: {err.strip()[-400:]!r}")


def check_actors_option(binary, tmp):
    """--actors: where the in-memory actors run; both places serve the mail
    cycle, and the start line says which."""
    for where in ("io-thread", "scheduler"):
        path = write(os.path.join(tmp, f"actors-{where}.conf"),
                     f'actors = "{where}"\n')
        srv = Server(binary, tmp, f"actors-{where}", ["--config", path])
        replies = []
        try:
            if srv.port is not None:
                c = Client(srv.port, WAIT_S, text=True)
                try:
                    cookie = c.ask("REGISTER ann pw1").split()[-1]
                    for req in (f"MESSAGE hi {cookie}", f"STORE ann {cookie}",
                                f"COUNT ann {cookie}", f"GETMSG ann {cookie}",
                                f"DELMSG ann {cookie}"):
                        replies.append(c.ask(req))
                finally:
                    c.close()
            status = srv.stop() if srv.port is not None else None
            log = srv.log()
        finally:
            srv.kill()
        check(f"actors = \"{where}\" (config file): the mail cycle is "
              "served, the start line says so, a clean stop",
              replies == ["OK", "OK", "COUNTED 1", "OK hi", "OK"]
              and status == 0 and f"actors={where}," in log,
              f"replies: {replies!r}", f"exit status: {status}",
              f"log: {log.strip()[-400:]!r}")
    check_refused(binary, tmp, "an unknown place for the actors",
                  'actors = "gpu"\n', 1, "actors")


def check_node_config(binary, tmp):
    path = write(os.path.join(tmp, "node.conf"),
                 "# a node's file\nport = 7001\nsync = \"normal\"\n")
    status, out, err = call([binary, "node", "--config", path,
                             "--print-config"], tmp)
    check("a node reads its own --config (port required, given there)",
          status == 0 and "port = 7001" in out and 'sync = "normal"' in out,
          f"exit status: {status}", f"stdout: {out!r}",
          f"stderr: {err.strip()[:300]!r}")
    check_refused(binary, tmp, "a server setting in a node's file",
                  "port = 7001\nmax-text = 10\n", 2, "max-text", node=True)


def check_versions(binaries, tmp):
    version = project_version()
    for binary in binaries:
        name = os.path.basename(binary)
        status, out, err = call([binary, "--version"], tmp)
        ok = status == 0 and f"{name} {version}" in out
        if name == "smsp-actors":
            ok = ok and re.search(r"CAF 0\.17\.\d+", out) \
                and re.search(r"SQLite 3\.\d+", out) and "libsodium 1." in out
        check(f"{name} --version: exit 0, version {version}"
              + (" and CAF's, SQLite's, libsodium's" if name == "smsp-actors"
                 else ""),
              ok, f"exit status: {status}", f"stdout: {out!r}",
              f"stderr: {err!r}")


def check_caf_help(binary, tmp):
    for option in ("--long-help", "--dump-config"):
        log = os.path.join(tmp, "help.log")
        data = os.path.join(tmp, "help-data")
        status, out, err = call([binary, "--log-file", log, "--data-dir",
                                 data, option], tmp)
        check(f"{option}: exit 0, prints, creates neither the log file nor "
              "the data dir",
              status == 0 and out.strip() and not os.path.exists(log)
              and not os.path.exists(data) and LISTENING not in out,
              f"exit status: {status}", f"stdout: {out.strip()[:200]!r}",
              f"stderr: {err.strip()[:300]!r}",
              f"log exists: {os.path.exists(log)}",
              f"data dir exists: {os.path.exists(data)}")


def check_caf_error(binary, tmp):
    status, out, err, _ = start(binary, tmp, "caf-bad",
                                ["--scheduler.max-threads=many"])
    check("a CAF option CAF cannot parse is refused naming it (exit 2)",
          status == 2 and "--scheduler.max-threads" in err,
          f"exit status: {status}", f"stderr: {err.strip()[:300]!r}")


def check_tool_exit_codes(client, bench, tmp):
    for binary, args, label in (
            (client, ["--port", "0"], "a port out of range"),
            (client, ["--bogus"], "an unknown option"),
            (client, ["--timeout", "nan"], "a bad number"),
            (bench, ["--connections", "0"], "a count out of range"),
            (bench, ["--bogus"], "an unknown option"),
            (bench, ["--workload", "nothing"], "an unknown workload")):
        status, out, err = call([binary] + args, tmp)
        check(f"{os.path.basename(binary)} {' '.join(args)} ({label}): "
              "usage error, exit 2", status == 2,
              f"exit status: {status}", f"stderr: {err.strip()[:300]!r}")
    port = str(free_port())
    status, out, err = call([client, "--port", port], tmp)
    check("smsp-client without a server: failure at run time, exit 1",
          status == 1 and "cannot connect" in err,
          f"exit status: {status}", f"stderr: {err.strip()[:300]!r}")
    status, out, err = call([bench, "--port", port, "--duration", "0.1",
                             "--warmup", "0", "--connections", "1"], tmp)
    check("smsp-bench without a server: failure at run time, exit 1",
          status == 1, f"exit status: {status}",
          f"stderr: {err.strip()[:300]!r}")


def main(binaries, tmp, cleanup):
    server, client, bench = binaries
    check_example(server, tmp)
    check_refused(server, tmp, "an unknown setting",
                  "# comment\nport = 1\nprot = 5000\n", 3, "prot")
    check_refused(server, tmp, "a port out of range",
                  "\nport = 70000\n", 2, "port")
    check_refused(server, tmp, "an unknown sync mode",
                  'host = "127.0.0.1"\nsync = "fast"\n', 2, "sync")
    check_refused(server, tmp, "a bad mailbox node",
                  'mailbox-node = ["127.0.0.1:7001", "nowhere"]\n', 1,
                  "mailbox-node")
    check_refused(server, tmp, "a list for a single value",
                  "max-text = [1, 2]\n", 1, "max-text")
    check_refused(server, tmp, "a section", "[smsp]\nport = 5001\n", 1,
                  "section")
    check_refused(server, tmp, "a setting given twice",
                  "port = 1\nport = 2\n", 2, "port")
    check_refused(server, tmp, "a setting that is not an option's (config)",
                  'config = "other.conf"\n', 1, "config")
    status, out, err, _ = start(server, tmp, "missing",
                                ["--config", os.path.join(tmp, "none.conf")])
    check("a missing config file is refused (exit 2, named)",
          status == 2 and "none.conf" in err, f"exit status: {status}",
          f"stderr: {err.strip()[:300]!r}")
    check_override_starts(server, tmp)
    check_actors_option(server, tmp)
    check_print_config(server, tmp)
    check_node_config(server, tmp)
    check_versions(binaries, tmp)
    check_caf_help(server, tmp)
    check_caf_error(server, tmp)
    check_tool_exit_codes(client, bench, tmp)


if __name__ == "__main__":
    sys.exit(run(main, "smsp-config.",
                 ("SERVER_BIN", "CLIENT_BIN", "BENCH_BIN")))
