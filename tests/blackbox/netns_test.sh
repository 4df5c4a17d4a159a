#!/usr/bin/env bash
# A front and two mailbox nodes on distinct addresses, in network namespaces
# joined by a bridge: mutual TLS off loopback, and a real network partition.
#
# Usage: netns_test.sh SERVER_BIN
#
# Needs root (ip netns, veth, bridge from iproute2); exits 77 (ctest's skip)
# where namespaces cannot be made. Hosts: front 10.77.0.1, node A 10.77.0.2,
# node B 10.77.0.3, each in a namespace of its own; the client runs in the
# front's. Checks: a node refuses a non-loopback address without TLS; with
# the test CA's certificates every command works across the addresses, users
# on both nodes; cutting node A's link (ip link down: packets dropped, no
# FIN, no RST) makes its users' requests answer 'KO mailbox unavailable'
# while node B's users are served; restoring the link restores service, with
# the mail intact. Timeouts are hang detectors only.
set -uo pipefail

bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
tag=s$$
tmp=$(mktemp -d /tmp/smsp-netns.XXXXXX)
pids=()
failed=0
passed=0

ns() { echo "$tag-$1"; }

cleanup() {
  for pid in "${pids[@]}"; do
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  for h in front a b sw; do ip netns del "$(ns $h)" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # check NAME CONDITION-EXIT-STATUS [DETAILS]
  if [ "$2" -eq 0 ]; then
    echo "PASS: $1"
    passed=$((passed + 1))
  else
    echo "FAIL: $1"
    [ $# -gt 2 ] && echo "    $3"
    failed=$((failed + 1))
  fi
}

if ! ip netns add "$(ns sw)" 2>/dev/null; then
  echo "SKIP: cannot make network namespaces here (needs root and iproute2)"
  exit 77
fi
ip -n "$(ns sw)" link add br0 type bridge
ip -n "$(ns sw)" link set br0 up
host_ip() { case $1 in front) echo 10.77.0.1 ;; a) echo 10.77.0.2 ;; b) echo 10.77.0.3 ;; esac; }
for h in front a b; do
  ip netns add "$(ns $h)"
  ip link add "$tag$h" type veth peer name "$tag${h}br"
  ip link set "$tag$h" netns "$(ns $h)"
  ip link set "$tag${h}br" netns "$(ns sw)"
  ip -n "$(ns sw)" link set "$tag${h}br" master br0 up
  ip -n "$(ns $h)" addr add "$(host_ip $h)/24" dev "$tag$h"
  ip -n "$(ns $h)" link set "$tag$h" up
  ip -n "$(ns $h)" link set lo up
done

bash "$here/make_test_ca.sh" "$tmp/pki" || { echo "FAIL: test CA"; exit 1; }
tls_node=(--node-cert "$tmp/pki/node.pem" --node-key "$tmp/pki/node.key" --node-ca "$tmp/pki/ca.pem")
tls_front=(--node-cert "$tmp/pki/front.pem" --node-key "$tmp/pki/front.key" --node-ca "$tmp/pki/ca.pem")

# start NAME HOST LOG ARGS...: runs smsp-actors in HOST's namespace, waits
# (bounded) for its listening line; sets $started_pid.
start() {
  local name=$1 host=$2 log=$3
  shift 3
  ip netns exec "$(ns "$host")" "$bin" "$@" >"$tmp/$name.out" 2>>"$log" &
  started_pid=$!
  pids+=("$started_pid")
  for _ in $(seq 300); do
    grep -q "listening on" "$tmp/$name.out" 2>/dev/null && return 0
    kill -0 "$started_pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# 1. No TLS off loopback.
ip netns exec "$(ns a)" "$bin" node --host 10.77.0.2 --port 7001 \
  --data-dir "$tmp/refused" >/dev/null 2>"$tmp/refused.err"
status=$?
grep -q -- "--node-cert" "$tmp/refused.err"
check "a node on 10.77.0.2 without TLS refuses to start (exit 2, naming the TLS options)" \
  $((status != 2 || $? != 0)) "exit $status: $(cat "$tmp/refused.err")"

# 2. A cluster across the three addresses, over mutual TLS.
start node-a a "$tmp/node-a.err" node --host 10.77.0.2 --port 7001 \
  --data-dir "$tmp/node-a" "${tls_node[@]}"
check "node A listens on 10.77.0.2 with TLS" $? "$(tail -3 "$tmp/node-a.err")"
start node-b b "$tmp/node-b.err" node --host 10.77.0.3 --port 7001 \
  --data-dir "$tmp/node-b" "${tls_node[@]}"
check "node B listens on 10.77.0.3 with TLS" $? "$(tail -3 "$tmp/node-b.err")"
start front front "$tmp/front.err" --host 10.77.0.1 --port 5000 --pwhash min \
  --dump-interval 0 --data-dir "$tmp/front" --mailbox-node 10.77.0.2:7001 \
  --mailbox-node 10.77.0.3:7001 "${tls_front[@]}"
check "the front listens on 10.77.0.1" $? "$(tail -3 "$tmp/front.err")"

# The client: one Python process in the front's namespace reading commands
# from this script. Each phase runs a small program.
client() {
  ip netns exec "$(ns front)" timeout 120 python3 - "$tmp" "$1" <<'EOF'
import json, os, socket, sys, time
tmp, phase = sys.argv[1], sys.argv[2]
state_file = os.path.join(tmp, "users.json")

def connect():
    s = socket.create_connection(("10.77.0.1", 5000), timeout=30)
    return s, s.makefile("rb")

def ask(conn, line):
    s, r = conn
    s.sendall((line + "\r\n").encode())
    return r.readline().decode().rstrip("\r\n")

conn = connect()
if phase == "setup":
    users = {}
    for i in range(12):
        name = f"u{i}"
        users[name] = ask(conn, f"REGISTER {name} password{i}").split()[1]
    for name, cookie in users.items():
        ask(conn, f"MESSAGE hello {name} {cookie}")
        assert ask(conn, f"STORE {name} {cookie}") == "OK", name
    json.dump(users, open(state_file, "w"))
    counts = [ask(conn, f"COUNT {n} {c}") for n, c in users.items()]
    print("OK" if all(c == "COUNTED 1" for c in counts) else f"BAD {counts}")
elif phase == "partitioned":
    # Users whose node is cut off get KO mailbox unavailable (bounded by
    # the node timeout, never a hang); the others are served.
    users = json.load(open(state_file))
    served, unavailable, other = [], [], []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        served, unavailable, other = [], [], []
        for n, c in users.items():
            reply = ask(conn, f"COUNT {n} {c}")
            (served if reply == "COUNTED 1" else
             unavailable if reply == "KO mailbox unavailable" else
             other).append((n, reply))
        if unavailable and served and not other:
            break
        time.sleep(0.2)
    json.dump([n for n, _ in unavailable], open(os.path.join(tmp, "cut.json"), "w"))
    print("OK" if unavailable and served and not other
          else f"BAD served={served} unavailable={unavailable} other={other}")
elif phase == "healed":
    users = json.load(open(state_file))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        replies = {n: ask(conn, f"GETMSG {n} {c}") for n, c in users.items()}
        if all(r == f"OK hello {n}" for n, r in replies.items()):
            break
        time.sleep(0.2)
    print("OK" if all(r == f"OK hello {n}" for n, r in replies.items())
          else f"BAD {replies}")
EOF
}

out=$(client setup)
check "every user registers, stores and counts across the three addresses" \
  "$([ "$out" = OK ]; echo $?)" "$out"
ask_dump() {
  ip netns exec "$(ns front)" bash -c "printf 'DUMP\r\n' | timeout 10 nc -q 2 10.77.0.1 5000" >/dev/null
  sleep 0.5
}
ask_dump
grep -E "DUMP node 10.77.0.2:7001: up, [1-9]" "$tmp/front.err" >/dev/null \
  && grep -E "DUMP node 10.77.0.3:7001: up, [1-9]" "$tmp/front.err" >/dev/null
check "users are placed on both nodes, both up" $? \
  "$(grep 'DUMP node' "$tmp/front.err" | tail -2)"

# 3. A partition: node A's link goes down (no FIN, no RST: packets vanish).
ip -n "$(ns a)" link set "${tag}a" down
out=$(client partitioned)
check "with node A cut off, its users get 'KO mailbox unavailable' and node B's are served" \
  "$([ "$out" = OK ]; echo $?)" "$out"
grep -q "node 10.77.0.2:7001 down" "$tmp/front.err"
check "the front logs node A down" $? "$(grep 'node 10.77.0.2' "$tmp/front.err" | tail -3)"

# 4. The link comes back: service and mail come back.
ip -n "$(ns a)" link set "${tag}a" up
out=$(client healed)
check "after the partition heals, every user's mail is there again" \
  "$([ "$out" = OK ]; echo $?)" "$out"

echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  for f in front node-a node-b; do
    echo "--- $f log (tail)"
    tail -15 "$tmp/$f.err"
  done
  exit 1
fi
exit 0
