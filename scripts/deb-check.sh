#!/usr/bin/env bash
# Install the Debian package on this machine and check it as an operator
# would, then purge it again. Run as root (CI does), after `make deb`:
#
#   scripts/deb-check.sh target/debian/backchannel_<version>_<arch>.deb
#
# 0. lintian (Debian's own check) on the .deb: any error or warning fails,
#    unless deploy/debian/lintian-overrides overrides it with a comment that
#    says why; an override that no longer matches fails too; the
#    changelog's latest entry is the package's version; the copyright file
#    has LICENSE's notice and text;
# 1. dpkg -i; the installed binary's --version;
# 2. systemd-analyze verify on both units (works without systemd as PID 1)
#    and their exposure score (systemd-analyze security --offline);
# 3. the environment files: conffiles, root:backchannel, mode 0640;
# 4. one round trip with the installed binary as the service user, with the
#    packaged environment files sourced and DATABASE_URL, the token files and
#    the addresses overridden: `serve`, an echo `agent` (its /readyz), one
#    `submit`, `status --check`, the access log;
# 5. dpkg --purge, and nothing of the package is left.
#
# Needs PG_ADMIN_URL (make deb-check exports it): a scratch database is
# created there and dropped at the end.
set -euo pipefail

deb=${1:?usage: scripts/deb-check.sh PACKAGE.deb}
: "${PG_ADMIN_URL:?export PG_ADMIN_URL (make deb-check does)}"
[ "$(id -u)" = 0 ] || { echo "deb-check: run as root (it installs a package)" >&2; exit 1; }

say() { echo "deb-check: $*"; }
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d)
db="bc_deb_check_$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql "$PG_ADMIN_URL" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  if dpkg-query -W -f='${Status}' backchannel 2>/dev/null | grep -q installed; then
    dpkg --purge backchannel >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

command -v systemd-analyze >/dev/null || {
  say "installing systemd (for systemd-analyze)"
  apt-get install -y -qq systemd >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq systemd >/dev/null; }
}

command -v lintian >/dev/null || {
  say "installing lintian"
  apt-get install -y -qq lintian >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq lintian >/dev/null; }
}

say "lintian $(lintian --version | grep -o '[0-9][0-9.]*' | head -n 1)"
# Every override carries a comment (the lines starting with # right above it)
# that says why.
overrides=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/lintian/overrides/backchannel 2>/dev/null) \
  || fail "the package has no usr/share/lintian/overrides/backchannel"
unexplained=$(awk '/^#/ { why = 1; next } /^[[:space:]]*$/ { why = 0; next } !why { print }' <<<"$overrides")
[ -z "$unexplained" ] || fail "lintian overrides without a comment that says why: $unexplained"
# Errors and warnings fail, unless overridden; an override that matches
# nothing (unused-override, mismatched-override) fails too. The overridden
# tags are shown (O:, with their reasons as N: lines), so lintian's exit status
# cannot tell (--show-overrides makes them count for --fail-on): it runs with
# --fail-on none (a status other than 0 is lintian itself failing) and its
# output is read instead.
lintian_out=$work/lintian.txt
lintian --fail-on none --display-info --show-overrides "$deb" >"$lintian_out" 2>&1 \
  || { cat "$lintian_out" >&2; fail "lintian did not run"; }
# (As root lintian says so; that line is dropped.)
sed -i '/^running with root privileges is not recommended!$/d' "$lintian_out"
if grep -Eq '^[EW]: |unused-override|mismatched-override' "$lintian_out"; then
  cat "$lintian_out" >&2
  fail "lintian: errors, warnings or an override that matches nothing (above)"
fi
sed 's/^/deb-check:   /' "$lintian_out"
say "  lintian: no errors, no warnings but the overridden ones"

# lintian does not compare the changelog with the package: the top entry of
# deploy/debian/changelog must name the version (a new Cargo version needs a
# new entry).
changelog_version=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/backchannel/changelog.gz | gzip -dc \
  | sed -n '1s/^backchannel (\([^)]*\)).*/\1/p')
[ "$changelog_version" = "$(dpkg-deb -f "$deb" Version)" ] \
  || fail "the changelog's latest entry is '$changelog_version', the package is $(dpkg-deb -f "$deb" Version): add an entry to deploy/debian/changelog"

# The copyright file (deploy/debian/copyright) says what LICENSE says: the
# same notice and the same MIT text.
copyright=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/backchannel/copyright)
license=$(dirname "$0")/../LICENSE
notice=$(sed -n 's/^Copyright (c) //p' "$license")
grep -qx "Copyright: $notice" <<<"$copyright" || fail "the copyright file does not say 'Copyright: $notice' as LICENSE does"
# The stand-alone License: MIT paragraph, its continuation lines unindented.
licence_text=$(awk '/^License: MIT$/ { n++; next } n == 2 && /^ / { print }' <<<"$copyright" | sed 's/^ //; s/^\.$//')
[ "$licence_text" = "$(sed -n '/^Permission/,$p' "$license")" ] \
  || fail "the licence text in deploy/debian/copyright differs from LICENSE"

say "installing $(basename "$deb") ($(du -h "$deb" | cut -f1))"
dpkg -i "$deb" >/dev/null
version=$(/usr/bin/backchannel --version)
expected=$(dpkg-deb -f "$deb" Version)
[ "$version" = "backchannel $expected" ] || fail "--version says '$version', the package is $expected"
say "installed: $version"
# The package ships no md5sums (cargo-deb writes none); dpkg records them at
# unpack, and every installed file must match.
dpkg --verify backchannel || fail "dpkg --verify: installed files differ from the package"

say "systemd-analyze verify"
units=(/usr/lib/systemd/system/backchannel.service /usr/lib/systemd/system/backchannel-agent.service)
man_check=()
command -v man >/dev/null || man_check=(--man=no)   # Documentation=man:... needs man-db
verify=$(systemd-analyze verify "${man_check[@]}" "${units[@]}" 2>&1) || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify has warnings: $verify"
for unit in "${units[@]}"; do
  # --threshold is on systemd's internal 0-100 scale: 20 is an exposure of 2.0.
  security=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) \
    || fail "$(basename "$unit"): exposure above 2.0: $(tail -n 1 <<<"$security")"
  say "  $(grep -o 'exposure level.*' <<<"$security")"
done
[ ! -e /etc/systemd/system/multi-user.target.wants/backchannel.service ] \
  || fail "the install enabled backchannel.service; it must wait for its configuration"

say "environment files: conffiles, root:backchannel, 0640"
conffiles=$(dpkg-query -W -f='${Conffiles}\n' backchannel)
for file in /etc/backchannel/backchannel.env /etc/backchannel/agent.env; do
  grep -q " $file " <<<"$conffiles" || fail "$file is not a conffile: $conffiles"
  [ "$(stat -c '%a %U:%G' "$file")" = "640 root:backchannel" ] || fail "$file is $(stat -c '%a %U:%G' "$file")"
done
[ "$(stat -c '%a %U:%G' /etc/backchannel)" = "750 root:backchannel" ] || fail "/etc/backchannel is $(stat -c '%a %U:%G' /etc/backchannel)"
getent passwd backchannel | grep -q ':/usr/sbin/nologin$' || fail "no system user backchannel"

say "a round trip with the installed binary, as the user backchannel"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
psql "$PG_ADMIN_URL" -qc "create database $db" >/dev/null
submitter="deb-check-submitter-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
listener="deb-check-listener-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
echo "$submitter" >"$work/submitter.tokens"
echo "$listener" >"$work/listener.tokens"
echo "$listener" >"$work/listener.token"
chgrp backchannel "$work" "$work"/*.token*
chmod 0750 "$work" && chmod 0640 "$work"/*.token*
broker_port=$(free_port)
health_port=$(free_port)
base="http://127.0.0.1:$broker_port"
# setpriv execs (runuser would fork and stay in between, taking the signals).
as_service() { setpriv --reuid=backchannel --regid=backchannel --init-groups -- "$@"; }

# The packaged settings check the schema (BACKCHANNEL_MIGRATE=check): apply
# it first, as production does, with the installed binary.
DATABASE_URL="${PG_ADMIN_URL%/*}/$db" /usr/bin/backchannel migrate >/dev/null \
  || fail "backchannel migrate failed"
(
  set -a; . /etc/backchannel/backchannel.env; set +a
  export DATABASE_URL="${PG_ADMIN_URL%/*}/$db"
  export BACKCHANNEL_SUBMITTER_TOKENS_FILE="$work/submitter.tokens"
  export BACKCHANNEL_LISTENER_TOKENS_FILE="$work/listener.tokens"
  export BACKCHANNEL_BIND="127.0.0.1:$broker_port"
  exec setpriv --reuid=backchannel --regid=backchannel --init-groups -- /usr/bin/backchannel serve
) >"$work/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/broker.log" >&2; fail "the broker exited"; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { cat "$work/broker.log" >&2; fail "the broker did not become ready"; }

(
  set -a; . /etc/backchannel/agent.env; set +a
  export BACKCHANNEL_SERVER="$base"
  export BACKCHANNEL_LISTENER_TOKEN_FILE="$work/listener.token"
  export BACKCHANNEL_HEALTH_BIND="127.0.0.1:$health_port"
  unset BACKCHANNEL_FORWARD
  export BACKCHANNEL_ECHO=true
  exec setpriv --reuid=backchannel --regid=backchannel --init-groups -- /usr/bin/backchannel agent
) >"$work/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$health_port/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$work/agent.log" >&2; fail "the agent exited"; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$health_port/readyz" >/dev/null || { cat "$work/agent.log" >&2; fail "the agent's /readyz never said 200"; }

job=$(BACKCHANNEL_SERVER="$base" BACKCHANNEL_SUBMITTER_TOKEN="$submitter" \
  as_service /usr/bin/backchannel submit deb.check '{"from": "the installed package"}' --wait 10) \
  || fail "submit did not come back done: $job"
grep -q '"from": "the installed package"' <<<"$job" || fail "the echo is not the payload: $job"
check=$(BACKCHANNEL_SERVER="$base" BACKCHANNEL_SUBMITTER_TOKEN="$submitter" \
  as_service /usr/bin/backchannel status --check) || fail "status --check: $check"
say "  $check"
grep -q '"route":"/v1/jobs","status":200' "$work/broker.log" || fail "no access log line for the submit"
grep -q "$submitter" "$work/broker.log" "$work/agent.log" && fail "a token reached the logs"
curl -fsS "http://127.0.0.1:$health_port/metrics" | grep -q '^backchannel_agent_jobs_total{outcome="done"} 1$' \
  || fail "the agent's /metrics does not count the job"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid" || fail "a process did not stop cleanly on SIGTERM (exit $?)"; done
pids=()
say "  submit, echo agent, status --check and SIGTERM: ok"

say "purging"
dpkg --purge backchannel >/dev/null
[ ! -e /usr/bin/backchannel ] || fail "/usr/bin/backchannel is still there"
[ ! -e /etc/backchannel/backchannel.env ] || fail "the conffiles are still there after purge"
[ ! -e /usr/lib/systemd/system/backchannel.service ] || fail "the unit is still there"
say "ok"
