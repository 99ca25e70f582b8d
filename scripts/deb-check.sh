#!/usr/bin/env bash
# Install the Debian package on this machine and check it as an operator
# would: a first install, an upgrade from the previous version, and the
# removal. Run as root (CI does), after `make deb`:
#
#   scripts/deb-check.sh target/debian/backchannel_<version>_<arch>.deb
#
# 0. lintian (Debian's own check) on the .deb: any error or warning fails,
#    unless deploy/debian/lintian-overrides overrides it with a comment that
#    says why; an override that no longer matches fails too; the
#    changelog's latest entry is the package's version; the copyright file
#    has LICENSE's notice and text; `nginx -t` on the docs' nginx blocks
#    (scripts/nginx-check.sh);
# 1. a first install (dpkg -i without a terminal): the binary's --version,
#    dpkg --verify; systemd-analyze verify on the three units (an instance of
#    the template too; works without systemd as PID 1) and their exposure
#    score; nothing enabled; no conffiles; the site's settings files made from
#    the templates (root:backchannel, 0640, comments only), the templates
#    written as the quoting rule says, read the same by systemd and a shell;
#    the migrations and grants in /usr/share/backchannel/sql/; the man pages'
#    sections; then dpkg --purge, and nothing of the package is left;
# 2. the upgrade (docs/deploy.md#upgrades), from the previous version's
#    package (scripts/deb-previous.sh builds it from git, once): install it,
#    migrate a scratch database with its binary, edit its settings file as a
#    site does (a DATABASE_URL with an &), run its broker; install this
#    package without a terminal: no question, the edited file kept byte for
#    byte, the untouched one replaced by the template, the old broker still
#    running; postinst as it runs under systemd (a private /run/systemd and
#    stand-ins for systemctl and systemd-run): a broker whose schema is behind
#    is not restarted and the output says what to run, one whose schema is
#    current is restarted; `migrate --print` and `migrate` with the installed
#    binary; then the new broker with the unit's defaults and the site's file
#    (its address, and its database URL whole: the & part reaches
#    PostgreSQL), an echo agent (its /readyz), one `submit`, `status --check`,
#    the access log, SIGTERM;
# 3. a later package whose template changed, over a site file edited again:
#    no question, the file kept; a downgrade to the previous version: no
#    question, the file kept, its broker runs on the newer schema;
# 4. dpkg --purge: the settings files go, the token files and the system
#    user stay (as docs/deploy.md#removing-it says).
#
# Needs PG_ADMIN_URL (make deb-check exports it): scratch databases and a
# runtime role are created there and dropped at the end.
# (Under pipefail, `producer | grep -q` fails when grep stops reading early:
# output is captured first and grep reads it from a string.)
set -euo pipefail

deb=${1:?usage: scripts/deb-check.sh PACKAGE.deb}
deb=$(realpath "$deb")
: "${PG_ADMIN_URL:?export PG_ADMIN_URL (make deb-check does)}"
[ "$(id -u)" = 0 ] || { echo "deb-check: run as root (it installs a package)" >&2; exit 1; }
cd "$(dirname "$0")/.."

say() { echo "deb-check: $*"; }
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' backchannel 2>/dev/null | grep -q 'installed'; then
  fail "backchannel is installed on this machine; deb-check installs and purges it: run it where it is not"
fi

work=$(mktemp -d)
db="bc_deb_check_$$"
db_behind="bc_deb_check_behind_$$"
app="bc_deb_app_$$"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for name in "$db" "$db_behind"; do
    psql "$PG_ADMIN_URL" -qc "drop database if exists $name with (force)" >/dev/null 2>&1 || true
  done
  psql "$PG_ADMIN_URL" -qc "drop role if exists $app" >/dev/null 2>&1 || true
  if dpkg-query -W -f='${Status}' backchannel 2>/dev/null | grep -q 'installed'; then
    dpkg --purge backchannel >/dev/null 2>&1 || true
  fi
  rm -f /etc/backchannel/submitter.tokens /etc/backchannel/listener.tokens /etc/backchannel/listener.token
  rmdir /etc/backchannel 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need() {
  command -v "$1" >/dev/null || {
    say "installing $2 (for $1)"
    apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }
  }
}
need systemd-analyze systemd
need lintian lintian

started=$SECONDS
elapsed() { echo "$((SECONDS - started)) s"; }

# ---------------------------------------------------------------- 0. static
say "lintian $(lintian --version | grep -o '[0-9][0-9.]*' | head -n 1)"
# Every override carries a comment (the lines starting with # right above it)
# that says why.
if overrides=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/lintian/overrides/backchannel 2>/dev/null); then
  unexplained=$(awk '/^#/ { why = 1; next } /^[[:space:]]*$/ { why = 0; next } !why { print }' <<<"$overrides")
  [ -z "$unexplained" ] || fail "lintian overrides without a comment that says why: $unexplained"
fi
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
notice=$(sed -n 's/^Copyright (c) //p' LICENSE)
grep -qx "Copyright: $notice" <<<"$copyright" || fail "the copyright file does not say 'Copyright: $notice' as LICENSE does"
# The stand-alone License: MIT paragraph, its continuation lines unindented.
licence_text=$(awk '/^License: MIT$/ { n++; next } n == 2 && /^ / { print }' <<<"$copyright" | sed 's/^ //; s/^\.$//')
[ "$licence_text" = "$(sed -n '/^Permission/,$p' LICENSE)" ] \
  || fail "the licence text in deploy/debian/copyright differs from LICENSE"

# The nginx configurations the docs show, with this machine's nginx.
scripts/nginx-check.sh || fail "nginx -t on the docs' nginx blocks"

# ---------------------------------------------------------------- helpers
version=$(dpkg-deb -f "$deb" Version)

# dpkg -i as an unattended upgrade runs it: no terminal, nothing to answer.
# A conffile question would read end-of-file and fail the install.
install_deb() {
  local package=$1 log=$work/dpkg-$2.log
  if ! DEBIAN_FRONTEND=noninteractive dpkg -i "$package" </dev/null >"$log" 2>&1; then
    cat "$log" >&2
    fail "dpkg -i $(basename "$package") failed (above)"
  fi
  if grep -q 'Configuration file' "$log"; then
    cat "$log" >&2
    fail "dpkg -i $(basename "$package") asked about a configuration file (above)"
  fi
  [ "$(dpkg-query -W -f='${Status}' backchannel)" = "install ok installed" ] \
    || fail "after dpkg -i $(basename "$package"): $(dpkg-query -W -f='${Status}' backchannel)"
}

# The environment a unit gives its service: its Environment= lines, then its
# EnvironmentFile= files read by a shell (the quoting rule makes that what
# systemd reads: same_for_systemd checks it), NUL-separated for `env`.
unit_environment() {
  local unit=$1; shift
  env -i bash -c '
    set -a
    while IFS= read -r assignment; do export "$assignment"; done < <(sed -n "s/^Environment=//p" "$1")
    for file in $(sed -n "s/^EnvironmentFile=-\{0,1\}//p" "$1"); do
      [ -e "$file" ] && . "$file"
    done
    shift
    for file in "$@"; do . "$file"; done
    unset PWD SHLVL _
    env -0' _ "$unit" "$@"
}

# Run a command as the unit would: its user, the unit's environment (and
# the extra settings files given), and VAR=value overrides.
#   as_unit UNIT LOG [--file FILE]... [VAR=value]... -- COMMAND...
as_unit() {
  local unit=$1 log=$2 files=() overrides=() environment=()
  shift 2
  while [ "$1" = --file ]; do files+=("$2"); shift 2; done
  while [ "$1" != -- ]; do overrides+=("$1"); shift; done
  shift
  mapfile -d '' environment < <(unit_environment "$unit" "${files[@]}")
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${environment[@]}" "${overrides[@]}" \
    setpriv --reuid=backchannel --regid=backchannel --init-groups -- "$@" >"$log" 2>&1 &
  pids+=($!)
}

wait_ready() {
  local url=$1 pid=$2 log=$3 what=$4
  for _ in $(seq 1 100); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "$what exited"; }
    sleep 0.1
  done
  curl -fsS "$url" >/dev/null || { cat "$log" >&2; fail "$what did not become ready ($url)"; }
}

stop() {
  local pid=$1
  kill -TERM "$pid"
  wait "$pid" || fail "a process did not stop cleanly on SIGTERM (exit $?)"
  local kept=()
  for other in "${pids[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
  pids=("${kept[@]}")
}

# `serve --check`: the program side of issue 22; until it is there the
# postinst test below cannot pass its restart case.
has_serve_check() { grep -qE -- '--check([^-a-z]|$)' <<<"$(/usr/bin/backchannel serve --help 2>/dev/null || true)"; }

# Run a command quietly; show what it said when it fails.
quietly() {
  local out
  out=$("$@" 2>&1) || { echo "$out" >&2; return 1; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# systemd's own reading of a settings file (its environment.d parser, the
# one EnvironmentFile= uses, through the environment generator, which
# also expands $VAR: the files have no $) against a shell's.
generator=/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator
same_for_systemd() {
  local file=$1 dir key shell_value systemd_value line systemd_env
  [ -x "$generator" ] || fail "no $generator (systemd) to read $file with"
  dir=$(mktemp -d -p "$work")
  mkdir "$dir/environment.d"
  cp "$file" "$dir/environment.d/99-deb-check.conf"
  systemd_env=$(env -i XDG_CONFIG_HOME="$dir" HOME="$dir" "$generator")
  for key in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$file"); do
    shell_value=$(env -i bash -c 'set -a; . "$1"; printf %s "${!2}"' _ "$file" "$key")
    line=$(grep "^$key=" <<<"$systemd_env" | tail -n 1)
    systemd_value=$(env -i bash -c "$line; printf %s \"\${$key}\"")
    [ "$shell_value" = "$systemd_value" ] \
      || fail "$file: $key is '$systemd_value' for systemd and '$shell_value' for a shell"
  done
}

units=(/usr/lib/systemd/system/backchannel.service /usr/lib/systemd/system/backchannel@.service
       /usr/lib/systemd/system/backchannel-agent.service)
broker_unit=${units[0]}
agent_unit=${units[2]}
templates=/usr/share/backchannel/env

# ---------------------------------------------------------------- 1. first install
say "1. a first install of $(basename "$deb") ($(du -h "$deb" | cut -f1))"
install_deb "$deb" first
installed=$(/usr/bin/backchannel --version)
[ "$installed" = "backchannel $version" ] || fail "--version says '$installed', the package is $version"
say "  installed: $installed"
# The package ships no md5sums (cargo-deb writes none); dpkg records them at
# unpack, and every installed file must match (dpkg --verify prints the
# files that differ, and exits 0 even then).
verify=$(dpkg --verify backchannel) || fail "dpkg --verify did not run"
[ -z "$verify" ] || fail "dpkg --verify: installed files differ from the package: $verify"

say "  systemd-analyze verify, exposure"
man_check=()
command -v man >/dev/null || man_check=(--man=no)   # Documentation=man:... needs man-db
# The template is checked as an instance (a link named like one).
mkdir "$work/units"
ln -s /usr/lib/systemd/system/backchannel@.service "$work/units/backchannel@deb-check.service"
to_verify=("${units[0]}" "$work/units/backchannel@deb-check.service" "${units[2]}")
out=$(systemd-analyze verify "${man_check[@]}" "${to_verify[@]}" 2>&1) || fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify has warnings: $out"
for unit in "${to_verify[@]}"; do
  # --threshold is on systemd's internal 0-100 scale: 20 is an exposure of 2.0.
  security=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1) \
    || fail "$(basename "$unit"): exposure above 2.0: $(tail -n 1 <<<"$security")"
  say "    $(basename "$unit"): $(grep -o 'exposure level.*' <<<"$security")"
done
for unit in "${units[@]}"; do
  grep -qx 'Type=notify\|Type=exec' "$unit" || fail "$unit: no Type="
done
grep -qx 'Type=notify' "$broker_unit" || fail "backchannel.service is not Type=notify"
grep -qx 'Type=notify' "${units[1]}" || fail "backchannel@.service is not Type=notify"
for name in backchannel.service backchannel-agent.service; do
  [ ! -e "/etc/systemd/system/multi-user.target.wants/$name" ] \
    || fail "the install enabled $name; it must wait for its configuration"
done

say "  the settings files: not conffiles, made from the templates, root:backchannel 0640"
conffiles=$(dpkg-query -W -f='${Conffiles}' backchannel)
[ -z "$conffiles" ] || fail "the package has conffiles (an upgrade could stop to ask): $conffiles"
for name in backchannel.env agent.env; do
  file=/etc/backchannel/$name
  [ "$(stat -c '%a %U:%G' "$file")" = "640 root:backchannel" ] || fail "$file is $(stat -c '%a %U:%G' "$file")"
  cmp -s "$file" "$templates/$name" || fail "$file is not the template $templates/$name"
  active=$(grep -v '^#' "$templates/$name" | grep -v '^[[:space:]]*$' || true)
  [ -z "$active" ] || fail "the template $name has active settings (comments only): $active"
  # The quoting rule: every example is KEY='value', no quote inside.
  unquoted=$(grep -E '^#[A-Z_][A-Z0-9_]*=' "$templates/$name" | grep -Ev "^#[A-Z_][A-Z0-9_]*='[^']*'\$" || true)
  [ -z "$unquoted" ] || fail "$name: examples not written KEY='value': $unquoted"
  sed -n 's/^#\([A-Z_][A-Z0-9_]*=\)/\1/p' "$templates/$name" >"$work/uncommented-$name"
  same_for_systemd "$work/uncommented-$name"
done
[ "$(stat -c '%a %U:%G' /etc/backchannel)" = "750 root:backchannel" ] || fail "/etc/backchannel is $(stat -c '%a %U:%G' /etc/backchannel)"
getent passwd backchannel | grep -q ':/usr/sbin/nologin$' || fail "no system user backchannel"

say "  the migrations and grants in /usr/share/backchannel/sql/, as the binary prints them"
for file in sql/*.sql; do
  cmp -s "$file" "/usr/share/backchannel/sql/$(basename "$file")" || fail "/usr/share/backchannel/sql/$(basename "$file") is missing or differs from $file"
done
printed=$(/usr/bin/backchannel migrate --print --all | sed -n 's/^-- \([0-9][0-9][0-9]_.*\.sql\)$/\1/p')
shipped=$(cd /usr/share/backchannel/sql && ls [0-9][0-9][0-9]_*.sql)
[ "$printed" = "$shipped" ] || fail "migrate --print --all prints $(echo $printed), the package ships $(echo $shipped)"
latest=$(/usr/bin/backchannel migrate --print --all | sed -n 's/.*this build needs version \([0-9]*\)).*/\1/p')
[ -n "$latest" ] || fail "migrate --print --all does not say the version this build needs"

say "  the man pages: EXIT STATUS, ENVIRONMENT, FILES, SIGNALS"
for page in backchannel backchannel-serve backchannel-agent; do
  text=$(gzip -dc "/usr/share/man/man1/$page.1.gz")
  for section in '"EXIT STATUS"' ENVIRONMENT FILES; do
    grep -qx "\.SH $section" <<<"$text" || fail "man $page has no $section section"
  done
done
for page in backchannel-serve backchannel-agent; do
  grep -qx '\.SH SIGNALS' <<<"$(gzip -dc "/usr/share/man/man1/$page.1.gz")" || fail "man $page has no SIGNALS section"
done

say "  purge"
dpkg --purge backchannel >/dev/null
[ ! -e /usr/bin/backchannel ] || fail "/usr/bin/backchannel is still there"
[ ! -e /usr/lib/systemd/system/backchannel.service ] || fail "the unit is still there"
[ ! -e /etc/backchannel ] || fail "/etc/backchannel is still there after purging a first install: $(ls -A /etc/backchannel)"
say "  first install and purge: ok ($(elapsed))"

# ---------------------------------------------------------------- 2. upgrade
previous_deb=$(scripts/deb-previous.sh)
previous=$(dpkg-deb -f "$previous_deb" Version)
dpkg --compare-versions "$previous" lt "$version" || fail "the previous version $previous is not below $version"
say "2. an upgrade from $previous to $version"
install_deb "$previous_deb" previous
[ "$(/usr/bin/backchannel --version)" = "backchannel $previous" ] || fail "the previous package's binary says $(/usr/bin/backchannel --version)"
previous_latest=$(/usr/bin/backchannel migrate --print --all | sed -n 's/.*this build needs version \([0-9]*\)).*/\1/p')
# What its units looked like, for running its broker as the unit did.
cp /usr/lib/systemd/system/backchannel.service "$work/previous-backchannel.service"

say "  a scratch database migrated by $previous as its owner, and a runtime role"
host_port=${PG_ADMIN_URL#*://}; host_port=${host_port#*@}; host_port=${host_port%%/*}
owner_url="${PG_ADMIN_URL%/*}/$db"
psql "$PG_ADMIN_URL" -qc "create database $db" >/dev/null
psql "$PG_ADMIN_URL" -qc "create role $app login" >/dev/null
DATABASE_URL="$owner_url" quietly /usr/bin/backchannel migrate || fail "$previous: backchannel migrate failed"
DATABASE_URL="$owner_url" quietly /usr/bin/backchannel migrate --grant "$app" || fail "$previous: backchannel migrate --grant failed"
schema_version() { psql "$1" -qAtc 'select max(version) from backchannel.schema_migrations'; }
[ "$(schema_version "$owner_url")" = "$previous_latest" ] || fail "the schema is at $(schema_version "$owner_url"), $previous needs $previous_latest"

# The site's token files, where the units look for them.
submitter="deb-check-submitter-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
listener="deb-check-listener-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
for file in submitter.tokens listener.tokens listener.token; do
  install -m 0640 -g backchannel /dev/null "/etc/backchannel/$file"
done
echo "$submitter" >/etc/backchannel/submitter.tokens
echo "$listener" >/etc/backchannel/listener.tokens
echo "$listener" >/etc/backchannel/listener.token

# The site edits the broker's settings file (a conffile up to 0.1.0, a
# commented template since 0.2.0: the line may start with #) as the
# docs say: its database, as the runtime role, with a URL whose & a shell
# would cut at without the quotes, and its address. agent.env stays as
# shipped.
broker_port=$(free_port)
site_url="postgres://$app@$host_port/$db?sslmode=disable&application_name=deb-check-site"
site=/etc/backchannel/backchannel.env
sed -i -e "s|^#\{0,1\}DATABASE_URL=.*|DATABASE_URL='${site_url//&/\\&}'|" \
  -e "s|^#\{0,1\}BACKCHANNEL_BIND=.*|BACKCHANNEL_BIND='127.0.0.1:$broker_port'|" "$site"
grep -qx "DATABASE_URL='$site_url'" "$site" || fail "could not edit DATABASE_URL in $site"
grep -qx "BACKCHANNEL_BIND='127.0.0.1:$broker_port'" "$site" || fail "could not edit BACKCHANNEL_BIND in $site"
site_sum=$(md5sum <"$site")
same_for_systemd "$site"
base="http://127.0.0.1:$broker_port"

say "  $previous's broker runs with the site's settings"
as_unit "$work/previous-backchannel.service" "$work/previous-broker.log" -- /usr/bin/backchannel serve
previous_pid=${pids[-1]}
wait_ready "$base/readyz" "$previous_pid" "$work/previous-broker.log" "the $previous broker"

say "  dpkg -i $(basename "$deb"), no terminal"
install_deb "$deb" upgrade
[ "$(/usr/bin/backchannel --version)" = "backchannel $version" ] || fail "after the upgrade --version says $(/usr/bin/backchannel --version)"
[ "$(md5sum <"$site")" = "$site_sum" ] || fail "the upgrade changed the edited $site"
[ "$(stat -c '%a %U:%G' "$site")" = "640 root:backchannel" ] || fail "$site is $(stat -c '%a %U:%G' "$site") after the upgrade"
cmp -s /etc/backchannel/agent.env "$templates/agent.env" \
  || fail "the unedited agent.env of $previous was not replaced by the template"
kill -0 "$previous_pid" 2>/dev/null || { cat "$work/previous-broker.log" >&2; fail "the $previous broker stopped during the upgrade"; }
curl -fsS "$base/readyz" >/dev/null || fail "the $previous broker is not ready after the upgrade"
# dpkg --verify reports the two settings files (obsolete conffiles of
# $previous, edited by the site and by postinst) and nothing else.
verify=$(dpkg --verify backchannel | grep -Ev ' c /etc/backchannel/(backchannel|agent)\.env$' || true)
[ -z "$verify" ] || fail "dpkg --verify after the upgrade: $verify"
say "    no question; backchannel.env kept byte for byte, agent.env now the template; the $previous broker still serves"

say "  postinst as under systemd: restart a broker only when the new binary accepts its set-up"
# A private /run/systemd (so postinst sees systemd) and stand-ins for the
# commands it calls: systemctl answers for an active backchannel.service
# with the installed unit's environment, systemd-run runs the command with
# that environment as the unit's user, deb-systemd-invoke only records.
stubs=$work/stubs
mkdir "$stubs"
cat >"$stubs/systemctl" <<'EOF'
#!/bin/bash
echo "systemctl $*" >>"$STUB_LOG"
case "$1" in
  show)
    unit_file=/usr/lib/systemd/system/${4/@*./@.}
    case "$3" in
      User|Group) sed -n "s/^$3=//p" "$unit_file" ;;
      Environment) sed -n 's/^Environment=//p' "$unit_file" | paste -sd ' ' ;;
      EnvironmentFiles) cat "$STUB_ENVIRONMENT_FILES" ;;
    esac ;;
  list-units) echo "backchannel.service loaded active running backchannel broker" ;;
esac
exit 0
EOF
cat >"$stubs/systemd-run" <<'EOF'
#!/bin/bash
# systemd-run --wait --pipe -p User= -p Group= -p Environment= -p EnvironmentFile=[-]F ... COMMAND
echo "systemd-run $*" >>"$STUB_LOG"
user=root group=root environment=() files=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p) case "$2" in
          User=*) user=${2#User=} ;;
          Group=*) group=${2#Group=} ;;
          Environment=*) read -ra environment <<<"${2#Environment=}" ;;
          EnvironmentFile=-*) [ ! -e "${2#EnvironmentFile=-}" ] || files+=("${2#EnvironmentFile=-}") ;;
          EnvironmentFile=*) files+=("${2#EnvironmentFile=}") ;;
        esac
        shift 2 ;;
    --*) shift ;;
    *) break ;;
  esac
done
mapfile -d '' settings < <(env -i bash -c 'set -a; for f in "$@"; do . "$f"; done; unset PWD SHLVL _; env -0' _ "${files[@]}")
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${environment[@]}" "${settings[@]}" \
  setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"
EOF
for name in deb-systemd-invoke deb-systemd-helper; do
  printf '#!/bin/sh\necho "%s $*" >>"$STUB_LOG"\nexit 0\n' "$name" >"$stubs/$name"
done
chmod +x "$stubs"/*
postinst_under_systemd() {
  local name=$1 files=$2
  : >"$work/$name.calls"
  STUB_LOG="$work/$name.calls" STUB_ENVIRONMENT_FILES="$files" PATH="$stubs:$PATH" \
    unshare --mount -- sh -c 'mount -t tmpfs deb-check /run && mkdir -p /run/systemd/system &&
      exec /var/lib/dpkg/info/backchannel.postinst configure "$1"' _ "$previous" \
    >"$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; fail "postinst configure failed"; }
}
printf '%s (ignore_errors=yes)\n' "$site" >"$work/site.files"
# A database whose schema is one version behind this binary's: its own
# --print --all, cut before the last migration.
psql "$PG_ADMIN_URL" -qc "create database $db_behind" >/dev/null
last_migration=$(/usr/bin/backchannel migrate --print --all | grep -E '^-- [0-9]{3}_.*\.sql$' | tail -n 1)
{ /usr/bin/backchannel migrate --print --all | sed "\|^$last_migration\$|,\$d"; echo 'COMMIT;'; } \
  | psql "${PG_ADMIN_URL%/*}/$db_behind" -qX -v ON_ERROR_STOP=1 >/dev/null || fail "could not make a schema one version behind"
printf "DATABASE_URL='%s'\n" "${PG_ADMIN_URL%/*}/$db_behind" >"$work/behind.env"
chgrp backchannel "$work" "$work/behind.env" && chmod 0750 "$work" && chmod 0640 "$work/behind.env"
printf '%s (ignore_errors=yes)\n' "$site" "$work/behind.env" >"$work/behind.files"
if has_serve_check; then
  postinst_under_systemd behind "$work/behind.files"
  grep -q 'deb-systemd-invoke try-restart backchannel-agent.service' "$work/behind.calls" \
    || fail "postinst did not restart the agent: $(cat "$work/behind.calls")"
  grep -q 'deb-systemd-invoke restart backchannel.service' "$work/behind.calls" \
    && fail "postinst restarted a broker whose schema is behind: $(cat "$work/behind.out")"
  grep -q 'was NOT restarted' "$work/behind.out" && grep -q 'backchannel migrate' "$work/behind.out" \
    || fail "postinst did not say what to run: $(cat "$work/behind.out")"
  say "    schema behind: not restarted, and postinst said:"
  sed 's/^/deb-check:      | /' "$work/behind.out"
  postinst_under_systemd previous-schema "$work/site.files"
  if [ "$previous_latest" -lt "$latest" ]; then
    grep -q 'deb-systemd-invoke restart backchannel.service' "$work/previous-schema.calls" \
      && fail "postinst restarted the broker on $previous's schema ($previous_latest < $latest)"
    say "    on $previous's schema (version $previous_latest, this one needs $latest): not restarted"
  else
    grep -q 'deb-systemd-invoke restart backchannel.service' "$work/previous-schema.calls" \
      || fail "postinst did not restart a broker whose schema is current: $(cat "$work/previous-schema.out")"
    say "    on $previous's schema (version $previous_latest, current for $version too): restarted"
  fi
else
  say "    SKIPPED: this build's serve has no --check (the program side of issue 22 adds it)"
fi

say "  the migrations, with the installed binary, as the schema's owner"
pending=$(DATABASE_URL="$owner_url" /usr/bin/backchannel migrate --print) || fail "migrate --print: $pending"
if [ "$previous_latest" -lt "$latest" ]; then
  grep -q '^BEGIN;$' <<<"$pending" || fail "migrate --print shows nothing pending on a schema at $previous_latest: $pending"
else
  grep -q '^-- nothing pending' <<<"$pending" || fail "migrate --print on a current schema: $pending"
fi
DATABASE_URL="$owner_url" quietly /usr/bin/backchannel migrate || fail "backchannel migrate failed"
DATABASE_URL="$owner_url" quietly /usr/bin/backchannel migrate --grant "$app" || fail "backchannel migrate --grant failed"
[ "$(schema_version "$owner_url")" = "$latest" ] || fail "after migrate the schema is at $(schema_version "$owner_url"), not $latest"
if has_serve_check; then
  postinst_under_systemd migrated "$work/site.files"
  grep -q 'deb-systemd-invoke restart backchannel.service' "$work/migrated.calls" \
    || fail "postinst did not restart the broker on the migrated schema: $(cat "$work/migrated.out")"
  say "    migrated: postinst restarts the broker"
fi
say "    schema at version $latest ($previous had $previous_latest)"

say "  $version's broker, as its unit runs it, with the site's settings; an echo agent; a round trip"
stop "$previous_pid"
as_unit "$broker_unit" "$work/broker.log" -- /usr/bin/backchannel serve
broker_pid=${pids[-1]}
wait_ready "$base/readyz" "$broker_pid" "$work/broker.log" "the $version broker"
# The whole URL reached PostgreSQL, the part after its & too.
sessions=$(psql "$PG_ADMIN_URL" -qAtc "select count(*) from pg_stat_activity where datname = '$db' and usename = '$app' and application_name = 'deb-check-site'")
[ "$sessions" -gt 0 ] || fail "no session of $app named deb-check-site: DATABASE_URL was not read whole"

health_port=$(free_port)
as_unit "$agent_unit" "$work/agent.log" BACKCHANNEL_SERVER="$base" BACKCHANNEL_HEALTH_BIND="127.0.0.1:$health_port" \
  BACKCHANNEL_ECHO=true -- /usr/bin/backchannel agent
agent_pid=${pids[-1]}
wait_ready "http://127.0.0.1:$health_port/readyz" "$agent_pid" "$work/agent.log" "the agent"

job=$(BACKCHANNEL_SERVER="$base" BACKCHANNEL_SUBMITTER_TOKEN="$submitter" \
  setpriv --reuid=backchannel --regid=backchannel --init-groups -- /usr/bin/backchannel submit deb.check '{"from": "the installed package"}' --wait 10) \
  || fail "submit did not come back done: $job"
grep -q '"from": "the installed package"' <<<"$job" || fail "the echo is not the payload: $job"
check=$(BACKCHANNEL_SERVER="$base" BACKCHANNEL_SUBMITTER_TOKEN="$submitter" \
  setpriv --reuid=backchannel --regid=backchannel --init-groups -- /usr/bin/backchannel status --check) || fail "status --check: $check"
say "    $check"
grep -q '"route":"/v1/jobs","status":200' "$work/broker.log" || fail "no access log line for the submit"
grep -q "$submitter" "$work/broker.log" "$work/agent.log" && fail "a token reached the logs"
agent_metrics=$(curl -fsS "http://127.0.0.1:$health_port/metrics") || fail "the agent's /metrics did not answer"
grep -q '^backchannel_agent_jobs_total{outcome="done"} 1$' <<<"$agent_metrics" \
  || fail "the agent's /metrics does not count the job"
stop "$agent_pid"
stop "$broker_pid"
say "  upgrade, migrate, submit, echo agent, status --check and SIGTERM: ok ($(elapsed))"

# ---------------------------------------------------------------- 3. later, downgrade
say "3. a later package whose template changed, over a site file edited again"
later=$work/backchannel_${version}+deb-check_later.deb
dpkg-deb -R "$deb" "$work/later"
echo "# A setting a later version explains." >>"$work/later/usr/share/backchannel/env/backchannel.env"
sed -i "s/^Version: .*/Version: $version+deb-check/" "$work/later/DEBIAN/control"
dpkg-deb -Zgzip -z1 -b "$work/later" "$later" >/dev/null
echo "# edited again by the site" >>"$site"
site_sum=$(md5sum <"$site")
install_deb "$later" later
[ "$(md5sum <"$site")" = "$site_sum" ] || fail "the later package changed $site"
say "    no question, backchannel.env kept"

say "  a downgrade to $previous"
install_deb "$previous_deb" downgrade
[ "$(md5sum <"$site")" = "$site_sum" ] || fail "the downgrade changed $site"
as_unit "$work/previous-backchannel.service" "$work/downgraded-broker.log" -- /usr/bin/backchannel serve
downgraded_pid=${pids[-1]}
wait_ready "$base/readyz" "$downgraded_pid" "$work/downgraded-broker.log" "the $previous broker on the schema of $version"
stop "$downgraded_pid"
say "    no question, backchannel.env kept, $previous's broker runs on schema version $latest"
install_deb "$deb" again

# ---------------------------------------------------------------- 4. purge
say "4. purge"
dpkg --purge backchannel >/dev/null
[ ! -e /usr/bin/backchannel ] || fail "/usr/bin/backchannel is still there"
[ ! -e /usr/lib/systemd/system/backchannel.service ] || fail "the unit is still there"
for name in backchannel.env agent.env; do
  [ ! -e "/etc/backchannel/$name" ] || fail "/etc/backchannel/$name is still there after purge"
done
# What docs/deploy.md#removing-it says stays.
for file in submitter.tokens listener.tokens listener.token; do
  [ -e "/etc/backchannel/$file" ] || fail "purge removed the administrator's /etc/backchannel/$file"
done
getent group backchannel >/dev/null || fail "purge removed the group backchannel"
say "  the settings files are gone; the token files, the user and the group stay, as documented"
say "ok ($(elapsed))"
