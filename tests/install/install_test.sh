#!/usr/bin/env bash
# The install tree and the .deb (issue 12, item 7), hermetic: everything in a
# temporary directory, nothing installed on this machine.
#   install_test.sh BUILD_DIR
# 1. cmake --install BUILD_DIR --prefix /usr into a staging DESTDIR: the
#    four tools, the man pages (when help2man is installed), the two systemd
#    units naming /usr/bin/smsp-actors, the example config; each installed
#    tool's --version and --help run.
# 2. cpack -G DEB: the package holds the same files, its control file has a
#    Depends line naming the runtime libraries, a Maintainer and a
#    Description, and the maintainer scripts.
set -euo pipefail
build=$(cd "$1" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check_file() { [ -f "$1" ] || fail "missing ${1#"$tmp"/}"; }

have_help2man=0
grep -q '^HELP2MAN_EXECUTABLE:FILEPATH=/' "$build/CMakeCache.txt" && have_help2man=1

# 1. The install tree.
stage=$tmp/stage
DESTDIR=$stage cmake --install "$build" --prefix /usr >"$tmp/install.log" \
  || { cat "$tmp/install.log" >&2; fail "cmake --install failed"; exit 1; }
for tool in smsp-actors smsp-client smsp-admin smsp-bench; do
  check_file "$stage/usr/bin/$tool"
  [ -x "$stage/usr/bin/$tool" ] || fail "$tool is not executable"
  out=$("$stage/usr/bin/$tool" --version 2>&1) || fail "$tool --version failed"
  grep -q "^$tool [0-9]" <<<"$out" || fail "$tool --version printed no version: $out"
  out=$("$stage/usr/bin/$tool" --help 2>&1) || fail "$tool --help failed"
  grep -q -- '--help' <<<"$out" || fail "$tool --help printed no usage"
done
check_file "$stage/usr/share/doc/smsp-actors/smsp-actors.conf.example"
check_file "$stage/usr/share/doc/smsp-actors/fail2ban-filter-smsp-actors.conf"
if [ $have_help2man = 1 ]; then
  for page in smsp-actors smsp-actors-node smsp-client smsp-admin smsp-bench; do
    man=$stage/usr/share/man/man1/$page.1.gz
    check_file "$man"
    [ -f "$man" ] && { zcat "$man" | grep -q '^\.TH' || fail "$page.1.gz is no man page"; }
  done
  zcat "$stage/usr/share/man/man1/smsp-actors.1.gz" | grep -q -- 'data\\-dir' \
    || fail "smsp-actors.1 lacks the --data-dir option"
  zcat "$stage/usr/share/man/man1/smsp-actors-node.1.gz" | grep -q -- 'node' \
    || fail "smsp-actors-node.1 lacks the node options"
else
  echo "help2man not installed: man pages not checked"
fi
units=$stage/lib/systemd/system
for unit in smsp-actors.service smsp-actors-node@.service; do
  check_file "$units/$unit"
  [ -f "$units/$unit" ] || continue
  grep -q '^ExecStart=/usr/bin/smsp-actors ' "$units/$unit" \
    || fail "$unit: ExecStart does not run /usr/bin/smsp-actors"
  grep -q '@[A-Z_]*@' "$units/$unit" \
    && fail "$unit: an unreplaced @VARIABLE@"
  for key in Type=notify DynamicUser=yes ProtectSystem=strict ProtectHome=yes \
             NoNewPrivileges=yes PrivateTmp=yes LimitNOFILE= StateDirectory=; do
    grep -q "^$key" "$units/$unit" || fail "$unit: no $key"
  done
done
grep -q -- '--data-dir /var/lib/smsp-actors$' "$units/smsp-actors.service" \
  || fail "smsp-actors.service: data dir is not /var/lib/smsp-actors"
# Nothing outside /usr but the units.
extra=$(cd "$stage" && find . -type f ! -path './usr/*' ! -path './lib/systemd/system/*')
[ -z "$extra" ] || fail "files outside /usr and the unit dir: $extra"
# systemd's own check of the units, where it runs: a unit it cannot parse
# fully is a failure (it needs the binary at the path of ExecStart: check
# copies whose ExecStart points into the stage; a template as an instance).
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$tmp/verify"
  sed "s|^ExecStart=/usr/bin/|ExecStart=$stage/usr/bin/|" \
    "$units/smsp-actors.service" >"$tmp/verify/smsp-actors.service"
  sed "s|^ExecStart=/usr/bin/|ExecStart=$stage/usr/bin/|" \
    "$units/smsp-actors-node@.service" >"$tmp/verify/smsp-actors-node@7001.service"
  for unit in smsp-actors.service smsp-actors-node@7001.service; do
    if SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no \
        "$tmp/verify/$unit" >"$tmp/verify.log" 2>&1; then
      ! grep -q "$unit" "$tmp/verify.log" \
        || { cat "$tmp/verify.log" >&2; fail "systemd-analyze verify $unit warns"; }
    elif grep -q "$unit" "$tmp/verify.log"; then
      cat "$tmp/verify.log" >&2
      fail "systemd-analyze verify $unit"
    else
      # Without a running systemd (a container) verify may not load at all.
      echo "systemd-analyze verify could not run here: $(head -1 "$tmp/verify.log")"
    fi
  done
fi

# 2. The .deb.
if ! command -v dpkg-deb >/dev/null; then
  echo "dpkg-deb not installed: the .deb not checked"
else
  cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg" \
    >"$tmp/cpack.log" 2>&1 \
    || { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; exit 1; }
  deb=$(ls "$tmp"/pkg/*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then
    cat "$tmp/cpack.log" >&2
    fail "cpack made no .deb"
  else
    dpkg-deb -c "$deb" >"$tmp/contents"
    dpkg-deb -I "$deb" >"$tmp/info"
    for path in ./usr/bin/smsp-actors ./usr/bin/smsp-client ./usr/bin/smsp-admin \
                ./usr/bin/smsp-bench \
                ./lib/systemd/system/smsp-actors.service \
                ./lib/systemd/system/smsp-actors-node@.service; do
      grep -q " $path\$" "$tmp/contents" || fail ".deb lacks $path"
    done
    if [ $have_help2man = 1 ]; then
      grep -q ' ./usr/share/man/man1/smsp-actors.1.gz$' "$tmp/contents" \
        || fail ".deb lacks the man pages"
    fi
    grep -q '^ Package: smsp-actors$' "$tmp/info" || fail ".deb: no Package"
    grep -q '^ Maintainer: .*<.*@.*>' "$tmp/info" || fail ".deb: no Maintainer"
    grep -q '^ Description: .' "$tmp/info" || fail ".deb: no Description"
    grep -q '^ Section: mail$' "$tmp/info" || fail ".deb: no Section mail"
    depends=$(grep '^ Depends: ' "$tmp/info" || true)
    [ -n "$depends" ] || fail ".deb: no Depends line"
    for lib in libcaf-core0.17 libcaf-io0.17 libcaf-openssl0.17 libsqlite3-0 \
               libsodium23 libedit2 libsystemd0 libc6; do
      grep -q "[ ,]$lib\\b" <<<"$depends" || fail ".deb: Depends lacks $lib"
    done
    for script in postinst prerm postrm; do
      grep -q " $script\$\| $script " "$tmp/info" || fail ".deb: no $script"
    done
    # The unit in the package names the packaged binary.
    dpkg-deb -x "$deb" "$tmp/x"
    grep -q '^ExecStart=/usr/bin/smsp-actors ' \
      "$tmp/x/lib/systemd/system/smsp-actors.service" \
      || fail ".deb: the unit's ExecStart is not /usr/bin/smsp-actors"
    echo "package: $(basename "$deb")"
    echo "$depends"
  fi
fi

if [ $failures -gt 0 ]; then
  echo "install test: $failures failure(s)" >&2
  exit 1
fi
echo "install test: install tree and .deb as expected"
