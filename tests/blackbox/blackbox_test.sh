#!/usr/bin/env bash
# Black-box test: runs the built smsp-actors and drives it with smsp-client and nc.
#
# Usage: blackbox_test.sh SERVER_BIN CLIENT_BIN
# The server runs as its own process on an ephemeral port (--port 0) with a
# fresh data directory; every scenario compares exact outputs and statuses.
set -u

if [[ $# -ne 2 ]]; then
  echo "usage: $0 SERVER_BIN CLIENT_BIN" >&2
  exit 2
fi
server_bin=$1
client_bin=$2
for bin in "$server_bin" "$client_bin"; do
  if [[ ! -x $bin ]]; then
    echo "FAIL: $bin is not an executable file" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
done

passed=0
failed=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/smsp-blackbox.XXXXXX") || exit 1
server_pid=
host=
port=

cleanup() {
  if [[ -n $server_pid ]]; then
    kill -KILL "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap still kills the server.
trap 'exit 130' INT TERM HUP

pass() {
  passed=$((passed + 1))
  echo "PASS: $1"
}

# fail NAME DETAIL...: one failure, each detail line indented below it.
fail() {
  failed=$((failed + 1))
  echo "FAIL: $1"
  shift
  local line
  for line in "$@"; do
    printf '%s\n' "$line" | sed 's/^/    /'
  done
}

# show STRING: a one-line, readable rendering ('...' with \n for newlines;
# bash $'...' quoting when other control bytes are present).
show() {
  local s=${1//$'\n'/\\n}
  if [[ $s == *[[:cntrl:]]* ]]; then
    printf '%q' "$1"
  else
    printf "'%s'" "$s"
  fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
  if [[ $2 == "$3" ]]; then
    pass "$1"
  else
    fail "$1" "expected: $(show "$2")" "actual:   $(show "$3")"
  fi
}

# check_match NAME ERE ACTUAL
check_match() {
  if [[ $3 =~ $2 ]]; then
    pass "$1"
  else
    fail "$1" "expected to match: $(show "$2")" "actual: $(show "$3")"
  fi
}

server_log_tail() {
  echo "--- server stdout (tail) ---"
  tail -n 20 "$tmp/server.out" 2>/dev/null
  echo "--- server stderr (tail) ---"
  tail -n 20 "$tmp/server.err" 2>/dev/null
}

# start_server [OPTIONS...]: starts the server on the data directory (with
# OPTIONS added) and waits up to 20 s for its "listening" line; sets
# server_pid, host and port.
start_server() {
  : >"$tmp/server.out"
  : >"$tmp/server.err"
  dumps_read=0
  "$server_bin" --port 0 --pwhash min --data-dir "$tmp/data" "$@" \
    >"$tmp/server.out" 2>"$tmp/server.err" &
  server_pid=$!
  local line='' deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    line=$(grep -m1 -E '^smsp-actors listening on .+:[0-9]+$' \
             "$tmp/server.out")
    [[ -n $line ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid"
      local status=$?
      server_pid=
      fail "server starts" \
           "the server exited with status $status before listening" \
           "$(server_log_tail)"
      return 1
    fi
    sleep 0.1
  done
  if [[ -z $line ]]; then
    fail "server starts" \
         "no line 'smsp-actors listening on <host>:<port>' within 20 s" \
         "$(server_log_tail)"
    return 1
  fi
  local addr=${line#smsp-actors listening on }
  port=${addr##*:}
  host=${addr%:*}
  host=${host#[}
  host=${host%]}
  # A wildcard bind is reachable through loopback.
  case $host in
    0.0.0.0) host=127.0.0.1 ;;
    ::) host=::1 ;;
  esac
  pass "server starts (listening on $host:$port)"
  local count
  count=$(grep -c '^smsp-actors listening on ' "$tmp/server.out")
  check_eq "server prints the listening line once" 1 "$count"
}

# running PID: the process exists and is not a zombie awaiting wait.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# stop_server NAME: SIGTERM, then expect exit status 0 within 10 s.
stop_server() {
  local started=$SECONDS
  kill -TERM "$server_pid"
  while running "$server_pid" && ((SECONDS - started < 10)); do
    sleep 0.1
  done
  local hung=0
  if running "$server_pid"; then
    hung=1
    kill -KILL "$server_pid"
  fi
  wait "$server_pid" 2>/dev/null
  local status=$?
  server_pid=
  if ((hung)); then
    fail "$1: exits on SIGTERM" "expected: status 0 within 10 s" \
         "actual:   still running after 10 s (killed)" "$(server_log_tail)"
  elif ((status == 0)); then
    pass "$1: exits with status 0 on SIGTERM ($((SECONDS - started)) s)"
  else
    fail "$1: exits on SIGTERM" "expected: status 0" \
         "actual:   status $status" "$(server_log_tail)"
  fi
}

# run_client SCRIPT [CLIENT_ARGS...]: runs the client in scripted mode and
# sets rc, out and err.
run_client() {
  local script=$1
  shift
  if (($# == 0)); then
    set -- --host "$host" --port "$port"
  fi
  printf '%s' "$script" \
    | timeout 60 "$client_bin" --timeout 10 "$@" \
        >"$tmp/client.out" 2>"$tmp/client.err"
  rc=$?
  out=$(cat "$tmp/client.out")
  err=$(cat "$tmp/client.err")
}

# check_client NAME SCRIPT EXPECTED_RC EXPECTED_STDOUT [EXPECTED_STDERR]
# Without EXPECTED_STDERR, stderr must be empty.
check_client() {
  local name=$1 script=$2 want_rc=$3 want_out=$4 want_err=${5-}
  run_client "$script"
  local problems=()
  if [[ $rc != "$want_rc" ]]; then
    problems+=("exit status: expected $want_rc, actual $rc")
  fi
  if [[ $out != "$want_out" ]]; then
    problems+=("stdout expected: $(show "$want_out")"
               "stdout actual:   $(show "$out")")
  fi
  if [[ $err != "$want_err" ]]; then
    problems+=("stderr expected: $(show "$want_err")"
               "stderr actual:   $(show "$err")")
  fi
  if ((${#problems[@]} == 0)); then
    pass "$name"
  else
    fail "$name" "${problems[@]}"
  fi
}

# nc_hex BYTES: sends BYTES (a printf format) on one connection and prints
# the reply bytes as hex, so terminators (and NULs) survive comparison.
nc_hex() {
  # shellcheck disable=SC2059 # $1 is a format on purpose: \r, \0 escapes
  printf "$1" | timeout 20 nc -w1 "$host" "$port" | od -An -v -tx1 \
    | tr -d ' \n'
}

# hex BYTES: the expected side of an nc_hex comparison.
hex() {
  # shellcheck disable=SC2059
  printf "$1" | od -An -v -tx1 | tr -d ' \n'
}

mkdir -p "$tmp/data"
# The scenarios below pipeline DUMPs; DUMP's rate limit (one run a second by
# default) has tests of its own, so it is off here.
if ! start_server --dump-interval 0; then
  echo "$passed passed, $failed failed"
  exit 1
fi

# --- Mail flow through the scripted client ---------------------------------

check_client "register bob" $'register bob pw-bob\n' 0 \
  "registered and logged in as bob"
check_client "register alice and send to bob (comments, blank lines skipped)" \
  $'# alice writes to bob\n\nregister alice pw-alice\nsend bob hello there\n' \
  0 $'registered and logged in as alice\nsent to bob'
run_client $'register carl pw\n' --host "$host" "--port=$port"
check_eq "client accepts --port=P" "0|registered and logged in as carl" \
  "$rc|$out"
help=$("$client_bin" --help 2>&1)
check_eq "client --help exits 0 and names --timeout" "0|yes" \
  "$?|$([[ $help == *--timeout* ]] && echo yes || echo no)"
check_client "bob counts, reads and deletes" \
  $'login bob pw-bob\ncount\nget\ndel\ncount\n' 0 \
  $'logged in as bob\n1\nhello there\ndeleted\n0'
check_client "commands are case-insensitive, CRLF script lines" \
  $'LOGIN bob pw-bob\r\nCount\r\n' 0 $'logged in as bob\n0'
check_client "inner spacing of a text survives" \
  $'login alice pw-alice\nsend bob a  b   c\n' 0 \
  $'logged in as alice\nsent to bob'
check_client "bob gets the spaced text" $'login bob pw-bob\nget\ndel\n' 0 \
  $'logged in as bob\na  b   c\ndeleted'

# --- Failures stop a script with status 1 -----------------------------------

check_client "get on an empty mailbox fails the script" \
  $'login bob pw-bob\nget\ncount\n' 1 "logged in as bob" \
  "smsp-client: line 2 (get): KO mailbox empty"
check_client "login with a wrong password fails" \
  $'login alice wrong-password\n' 1 "" \
  "smsp-client: line 1 (login): KO wrong username or password"
check_client "login of an unknown user gets the same reply" \
  $'login nobody pw\n' 1 "" \
  "smsp-client: line 1 (login): KO wrong username or password"
check_client "register of an existing user fails" \
  $'register alice other\n' 1 "" \
  "smsp-client: line 1 (register): KO user exists"
check_client "raw MESSAGE with a dead cookie: the original literal" \
  $'raw MESSAGE hi deadbeef\n' 1 "" \
  "smsp-client: line 1 (raw): You should log in first."
check_client "raw passes a successful reply through" $'raw DUMP\n' 0 "OK"
check_client "a session command without a session fails locally" \
  $'count\n' 1 "" \
  "smsp-client: line 1 (count): not logged in (register or login first)"
check_client "an unknown client command fails" $'frobnicate now\n' 1 "" \
  "smsp-client: line 1 (frobnicate): unknown command 'frobnicate' (try help)"
check_client "logout forgets the session" \
  $'login alice pw-alice\nlogout\nget\n' 1 \
  $'logged in as alice\nlogged out alice' \
  "smsp-client: line 3 (get): not logged in (register or login first)"
check_client "STORE to a missing user keeps the text queued" \
  $'login alice pw-alice\nmessage kept for later\nstore nobody\n' 1 \
  $'logged in as alice\nmessage queued' \
  "smsp-client: line 3 (store): KO no such user"
check_client "the queued text can still be stored" \
  $'login alice pw-alice\nstore bob\n' 0 $'logged in as alice\nstored for bob'
check_client "nothing left to store" $'login alice pw-alice\nstore bob\n' 1 \
  "logged in as alice" "smsp-client: line 2 (store): KO nothing to store"
check_client "bob receives the stored text" $'login bob pw-bob\ncount\nget\n' \
  0 $'logged in as bob\n1\nkept for later'
check_client "quit ends a script early with status 0" \
  $'login bob pw-bob\nquit\nfrobnicate\n' 0 "logged in as bob"

# --- The wire protocol through nc -------------------------------------------

if command -v nc >/dev/null 2>&1; then
  reply=$(printf 'REGISTER carol pw1\nDUMP\n' | timeout 20 nc -w1 "$host" "$port")
  check_match "nc: REGISTER then DUMP" $'^OK [0-9a-f]{32,}\nOK$' "$reply"
  carol1=$(sed -n '1s/^OK //p' <<<"$reply")
  reply=$(printf 'LOGIN carol pw1\nMESSAGE hi %s\n' "$carol1" \
            | timeout 20 nc -w1 "$host" "$port")
  check_match "nc: a new LOGIN kills the previous cookie" \
    $'^OK [0-9a-f]{32,}\nYou should log in first\\.$' "$reply"
  carol=$(sed -n '1s/^OK //p' <<<"$reply")
  if [[ $carol == "$carol1" ]]; then
    fail "nc: LOGIN issues a fresh cookie" "both cookies are $carol"
  else
    pass "nc: LOGIN issues a fresh cookie"
  fi
  reply=$(printf 'COUNT bob %s\nCOUNT nobody %s\ncount carol %s\n' \
            "$carol" "$carol" "$carol" | timeout 20 nc -w1 "$host" "$port")
  check_eq "nc: other mailboxes are private, existing or not" \
    $'KO not your mailbox\nKO not your mailbox\nCOUNTED 0' "$reply"
  check_eq "nc: CRLF request gets a CRLF reply" "$(hex 'OK\r\n')" \
    "$(nc_hex 'DUMP\r\n')"
  check_eq "nc: NUL request gets a NUL reply" "$(hex 'OK\0')" \
    "$(nc_hex 'DUMP\0')"
  check_eq "nc: mixed pipelined terminators, replies in order" \
    "$(hex 'OK\r\nOK\0OK\n')" "$(nc_hex 'DUMP\r\ndump\0DUMP\n')"
  reply=$(printf '\nFROB x\nREGISTER dave\n' \
            | timeout 20 nc -w1 "$host" "$port")
  check_eq "nc: empty, unknown and malformed requests" \
    "$(printf '%s\n' 'KO empty request' 'KO unknown command' \
         'KO usage: REGISTER <username> <password>')" \
    "$reply"
  reply=$({ head -c 70000 /dev/zero | tr '\0' a; printf '\nDUMP\n'; } \
            | timeout 20 nc -w1 "$host" "$port")
  check_eq "nc: an overlong request is refused, the connection kept" \
    $'KO request too long\nOK' "$reply"
  reply=$({ printf 'MESSAGE '; head -c 17000 /dev/zero | tr '\0' b;
            printf ' %s\nMESSAGE  two  words  %s\nSTORE carol %s\n' \
              "$carol" "$carol" "$carol"; } \
            | timeout 20 nc -w1 "$host" "$port")
  check_eq "nc: an overlong text is refused" \
    $'KO message text too long\nOK\nOK' "$reply"
  reply=$(printf 'GETMSG carol %s\nLOGOUT %s\nLOGOUT %s\n' \
            "$carol" "$carol" "$carol" | timeout 20 nc -w1 "$host" "$port")
  check_match "nc: GETMSG keeps inner spacing; LOGOUT twice" \
    $'^OK two  words\nOK\nKO( .*)?$' "$reply"
else
  echo "SKIP: nc not found; wire-level checks skipped"
fi

# --- Shutdown, durability across a restart ----------------------------------

old_port=$port
stop_server "first run"
check_client "connection refused exits with status 1 (a failure at run time)" $'count\n' 1 "" \
  "smsp-client: cannot connect to $host:$old_port: Connection refused"

# PROTOCOL.md section 5: acknowledged data survives a restart.
if start_server; then
  check_client "accounts and mail survive a restart" \
    $'login bob pw-bob\ncount\nget\n' 0 \
    $'logged in as bob\n1\nkept for later'
  check_client "a wrong password still fails after a restart" \
    $'login bob pw-alice\n' 1 "" \
    "smsp-client: line 1 (login): KO wrong username or password"
  out=$(timeout 10 "$server_bin" --port 0 --data-dir "$tmp/data" 2>&1 \
          </dev/null)
  status=$?
  check_match "a second server on a data dir in use exits non-zero, saying why" \
    "^[1-9][0-9]*\|smsp-actors: data dir $tmp/data is in use by another running smsp-actors \(pid $server_pid\)" \
    "$status|$out"
  if [[ -n ${carol-} ]]; then
    reply=$(printf 'MESSAGE hi %s\n' "$carol" \
              | timeout 20 nc -w1 "$host" "$port")
    check_eq "nc: sessions do not survive a restart" \
      "You should log in first." "$reply"
  fi
  stop_server "second run"
fi

# --- The server's command line ---------------------------------------------

out=$("$server_bin" --help 2>&1)
status=$?
check_eq "server --help exits 0" 0 "$status"
missing=
for option in --host --port --data-dir --pwhash 0.0.0.0; do
  [[ $out == *"$option"* ]] || missing+=" $option"
done
check_eq "server --help names every option and 0.0.0.0" "" "$missing"
for bad in "--port 70000" "--pwhash weak" "--bogus=1" "stray" "--sync sometimes" \
           "--data-dir /proc/smsp" "--mailbox-idle 0"; do
  # shellcheck disable=SC2086 # split the options on purpose
  out=$(timeout 10 "$server_bin" $bad --port 0 2>&1 </dev/null)
  status=$?
  check_match "server refuses '$bad' with a message and a non-zero status" \
    '^[1-9][0-9]*\|.+' "$status|$out"
done
start_server && {
  out=$(timeout 10 "$server_bin" --port "$port" --data-dir "$tmp/data2" \
          2>&1 </dev/null)
  status=$?
  check_match "a second server on a port in use exits non-zero, saying why" \
    "^[1-9][0-9]*\|smsp-actors: cannot serve 127.0.0.1:$port" \
    "$status|$out"
  stop_server "third run"
}

# --- Connection limits: --max-connections, --idle-timeout ------------------

out=$("$server_bin" --help 2>&1)
missing=
for option in --max-connections --idle-timeout; do
  [[ $out == *"$option"* ]] || missing+=" $option"
done
check_eq "server --help names the connection limits" "" "$missing"
for bad in "--max-connections 0" "--idle-timeout 0" "--idle-timeout soon"; do
  # shellcheck disable=SC2086 # split the options on purpose
  out=$(timeout 10 "$server_bin" $bad --port 0 2>&1 </dev/null)
  status=$?
  check_match "server refuses '$bad' with a message and a non-zero status" \
    '^[1-9][0-9]*\|.+' "$status|$out"
done

# line_from FD: one reply line read from FD, "<eof>" when the server closed
# the connection, "<timeout>" when nothing came within 30 s (a hang
# detector: none of these tests measures speed).
line_from() {
  local line
  if IFS= read -r -t 30 -u "$1" line; then
    printf '%s' "$line"
  elif (($? > 128)); then
    printf '<timeout>'
  else
    printf '<eof>'
  fi
}

now_ms() {
  echo $(($(date +%s%N) / 1000000))
}

if start_server --max-connections 1 --idle-timeout 1; then
  exec 3<>"/dev/tcp/$host/$port"
  printf 'NOPE\n' >&3
  check_eq "limits: the first connection is served" "KO unknown command" \
    "$(line_from 3)"
  exec 4<>"/dev/tcp/$host/$port"
  reply="$(line_from 4)|$(line_from 4)"
  exec 4<&-
  check_eq "limits: --max-connections 1: a second connection gets KO server busy, then EOF" \
    "KO server busy|<eof>" "$reply"
  printf 'NOPE\n' >&3
  check_eq "limits: the first connection is unaffected" "KO unknown command" \
    "$(line_from 3)"
  started=$(now_ms)
  reply=$(line_from 3)
  waited=$(($(now_ms) - started))
  exec 3<&-
  # Not before its timeout (less the reply's transit); how soon after it is
  # the broker tests' business (tests/broker, with a manual clock).
  check_match "limits: --idle-timeout 1 closes an idle connection ($waited ms)" \
    '^<eof> (9[0-9]{2}|[1-9][0-9]{3,})$' "$reply $waited"
  # The log has a writer thread of its own: wait for the line (bounded).
  wait_log 'closed: idle for 1 s \(--idle-timeout\)'
  check_match "limits: the idle close is logged" \
    'closed: idle for 1 s \(--idle-timeout\)' "$(cat "$tmp/server.err")"
  # The server sees the close a moment after the client: retry (bounded).
  reply='<none>'
  for _ in $(seq 300); do
    exec 5<>"/dev/tcp/$host/$port"
    printf 'NOPE\n' >&5 2>/dev/null
    reply=$(line_from 5)
    exec 5<&-
    [[ $reply == "KO unknown command" ]] && break
    sleep 0.1
  done
  check_eq "limits: the freed slot serves a new connection" \
    "KO unknown command" "$reply"
  stop_server "limits run"
fi

# --- Per-user limits: --max-mailbox, --max-imq-per-user --------------------

if command -v nc >/dev/null \
   && start_server --max-mailbox 1 --max-imq-per-user 2; then
  cookie=$(printf 'REGISTER capped pw\n' | timeout 20 nc -w1 "$host" "$port" \
             | cut -c4-)
  replies=$(printf 'MESSAGE m1 %s\nMESSAGE m2 %s\nMESSAGE m3 %s\nSTORE capped %s\nSTORE capped %s\nCOUNT capped %s\nDELMSG capped %s\nSTORE capped %s\nGETMSG capped %s\n' \
              "$cookie" "$cookie" "$cookie" "$cookie" "$cookie" "$cookie" \
              "$cookie" "$cookie" "$cookie" \
              | timeout 20 nc -w1 "$host" "$port" | tr '\n' '|')
  check_eq "limits: --max-imq-per-user 2 and --max-mailbox 1 answer KO and keep the message" \
    "OK|OK|KO too many unstored messages|OK|KO mailbox full|COUNTED 1|OK|OK|OK m1|" \
    "$replies"
  stop_server "per-user limits run"
fi

# --- Brute-force throttling: --login-penalty, --trusted-networks ------------

# With no trusted network, loopback is an outside address: three failed
# LOGINs from it (for three names) penalize it for every name.
if command -v nc >/dev/null \
   && start_server --trusted-networks '' --login-penalty 0.5 \
        --login-penalty-max 1; then
  printf 'REGISTER victim right1\n' | timeout 20 nc -w1 "$host" "$port" \
    >/dev/null
  replies=$(printf 'LOGIN a wrong\nLOGIN b wrong\nLOGIN victim wrong\nLOGIN victim right1\n' \
              | timeout 20 nc -w1 "$host" "$port" | tr '\n' '|')
  check_eq "throttle: after 3 failures from one address the right password gets the wrong password's reply" \
    "KO wrong username or password|KO wrong username or password|KO wrong username or password|KO wrong username or password|" \
    "$replies"
  sleep 0.7
  reply=$(printf 'LOGIN victim right1\n' | timeout 20 nc -w1 "$host" "$port")
  check_match "throttle: the right password gets in once the window is over" \
    '^OK [0-9a-f]{32}$' "$reply"
  stop_server "throttle run"
fi
out=$(timeout 10 "$server_bin" --port 0 --trusted-networks 10.0.0.1/8 2>&1 \
        </dev/null)
status=$?
check_match "throttle: a bad --trusted-networks is refused, saying why" \
  "^2\|smsp-actors: --trusted-networks: '10.0.0.1/8' is not a network" \
  "$status|$out"

# --- Passivation: --mailbox-idle ------------------------------------------

# The DUMP line of the registry, e.g. "3 active mailbox(es) (5 activated, 2
# passivated)", from the server log's last DUMP.
# wait_log ERE: waits (bounded, 30 s) until the server's log has a line
# matching ERE. The log is written by a thread of its own, a moment after
# the replies that caused its lines.
wait_log() {
  local _
  for _ in $(seq 300); do
    grep -qE "$1" "$tmp/server.err" && return 0
    sleep 0.1
  done
  return 1
}

# DUMP runs this server has answered that the tests below waited for.
dumps_read=0

# dump_logged: call (in this shell, not in $(...)) after each DUMP's reply:
# waits (bounded, 30 s) until that DUMP's run is logged to its end. The log
# is written by a thread of its own, a moment after the reply.
dump_logged() {
  local _
  dumps_read=$((dumps_read + 1))
  for _ in $(seq 300); do
    (($(grep -c 'DUMP done' "$tmp/server.err") >= dumps_read)) && return 0
    sleep 0.1
  done
  return 1
}

# The figures of the last DUMP logged.
last_dump_counts() {
  grep -o '[0-9]* active mailbox(es) ([0-9]* activated, [0-9]* passivated)' \
    "$tmp/server.err" | tail -n 1
}

if command -v nc >/dev/null && start_server --mailbox-idle 0.3; then
  requests=''
  for i in $(seq 1 20); do
    requests+="REGISTER idle$i pw-idle$i"$'\n'
  done
  mapfile -t cookies < <(printf '%s' "$requests" \
                           | timeout 20 nc -w1 "$host" "$port" | cut -c4-)
  if ((${#cookies[@]} == 20)); then
    requests="MESSAGE kept while asleep ${cookies[1]}"$'\n'
    requests+="STORE idle1 ${cookies[1]}"$'\n'
    for i in $(seq 1 20); do
      requests+="COUNT idle$i ${cookies[i - 1]}"$'\n'
    done
    requests+=$'DUMP\n'
    replies=$(printf '%s' "$requests" | timeout 20 nc -w1 "$host" "$port" \
                | tr '\n' ' ')
    check_eq "passivation: 20 mailboxes in use" \
      "OK OK COUNTED 1 $(printf 'COUNTED 0 %.0s' $(seq 2 20))OK " "$replies"
    dump_logged
    check_match "passivation: DUMP counts 20 active mailboxes" \
      '^20 active mailbox\(es\) \(20 activated, [0-9]+ passivated\)$' \
      "$(last_dump_counts)"
    # Every mailbox is retired within a sweep or two of --mailbox-idle;
    # poll with DUMP (bounded: 30 tries a second apart, a hang detector).
    for _ in $(seq 30); do
      sleep 1
      printf 'DUMP\n' | timeout 20 nc -w1 "$host" "$port" >/dev/null
      dump_logged
      [[ $(last_dump_counts) == "0 active"* ]] && break
    done
    check_match "passivation: after --mailbox-idle none is active" \
      '^0 active mailbox\(es\) \(20 activated, (2[0-9]) passivated\)$' \
      "$(last_dump_counts)"
    replies=$(printf 'GETMSG idle1 %s\nCOUNT idle2 %s\nDUMP\n' \
                "${cookies[0]}" "${cookies[1]}" \
                | timeout 20 nc -w1 "$host" "$port" | tr '\n' ' ')
    check_eq "passivation: mail is intact on the next request" \
      "OK kept while asleep COUNTED 0 OK " "$replies"
    dump_logged
    check_match "passivation: the next request activates the mailbox again" \
      '^2 active mailbox\(es\) \(22 activated, [0-9]+ passivated\)$' \
      "$(last_dump_counts)"
  else
    fail "passivation: register 20 users" "got ${#cookies[@]} cookies"
  fi
  stop_server "passivation run"
fi

echo "$passed passed, $failed failed"
((failed == 0))
