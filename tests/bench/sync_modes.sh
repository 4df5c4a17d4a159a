#!/usr/bin/env bash
# Group commit benchmark: MESSAGE+STORE over 50 connections against
# --sync=full, full without the commit delay, and off, side by side.
#
# Usage: tests/bench/sync_modes.sh [ROUNDS] [PIPELINE] [SECONDS]
# Run from the repository root after building. Each row is a fresh server on
# a fresh data dir; the modes alternate within each round, so a drift of the
# machine hits all of them alike. Prints one line per run with requests/s,
# latency, server CPU and the store's commits and writes (from DUMP).
#
# SLOW_FSYNC_US=N makes every fsync/fdatasync of the server N microseconds
# slower (an LD_PRELOAD shim built here with cc), to see how group commit
# behaves on a slow disk when the machine's own disk is fast.
set -euo pipefail
rounds=${1:-3}
pipeline=${2:-1}
seconds=${3:-5}
bin=build/bin
probe=$(mktemp -d "${TMPDIR:-/tmp}/smsp-fsync.XXXXXX")
# What one small synchronous write costs on this disk (fdatasync per block).
dd if=/dev/zero of="$probe/f" bs=4k count=500 oflag=dsync 2>&1 | tail -n 1 \
  | sed 's/^/disk, 500 x 4 KiB with O_DSYNC: /'
preload=
if [[ -n ${SLOW_FSYNC_US-} ]]; then
  cat >"$probe/slow.c" <<C
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
static int slow(const char* name, int fd) {
  int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
  usleep(${SLOW_FSYNC_US});
  return real(fd);
}
int fsync(int fd) { return slow("fsync", fd); }
int fdatasync(int fd) { return slow("fdatasync", fd); }
C
  cc -shared -fPIC -O2 -o "$probe/slow.so" "$probe/slow.c" -ldl
  preload="$probe/slow.so"
  echo "every fsync of the server made ${SLOW_FSYNC_US} us slower"
fi
run() {  # label, server options...
  local label=$1
  shift
  local d
  d=$(mktemp -d "${TMPDIR:-/tmp}/smsp-bench.XXXXXX")
  LD_PRELOAD=$preload "$bin/smsp-actors" --port 0 --pwhash min \
    --data-dir "$d/data" "$@" >"$d/srv.out" 2>"$d/srv.err" &
  local pid=$!
  until grep -q listening "$d/srv.out"; do sleep 0.1; done
  local port
  port=$(sed 's/.*://' "$d/srv.out")
  local res
  res=$("$bin/smsp-bench" --port "$port" -w message-store -k "$pipeline" \
          -c 50 -d "$seconds" --warmup 1 --server-pid "$pid" --json 2>/dev/null)
  printf 'DUMP\n' | nc -w1 127.0.0.1 "$port" >/dev/null
  sleep 0.3
  local store
  store=$(grep -o 'DUMP store: .*' "$d/srv.err" | tail -n 1)
  kill "$pid"
  wait "$pid" || true
  rm -rf "$d"
  python3 -c '
import json, sys
r = json.loads(sys.argv[2])
lat = r["latency_us"]
print("%-22s %9.0f req/s  p50 %7.0f us  p99 %7.0f us  server CPU %.2f  | %s"
      % (sys.argv[1], r["requests_per_s"], lat["p50"], lat["p99"],
         r["server_cpu_share"], sys.argv[3]))
' "$label" "$res" "$store"
}
trap 'rm -rf "$probe"' EXIT
for round in $(seq 1 "$rounds"); do
  echo "round $round (K=$pipeline)"
  run "full"                  --sync full
  run "full, no commit delay" --sync full --commit-delay 0
  run "off"                   --sync off
done
