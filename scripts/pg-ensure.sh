#!/usr/bin/env bash
# Make sure a PostgreSQL server answers, and print shell exports naming it.
#
#   eval "$(scripts/pg-ensure.sh)"
#
# Order of attempts (each one says what it does on stderr):
#   1. $PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres) answers: use it.
#   2. A Debian cluster exists (pg_ctlcluster): start it, as root.
#   3. Otherwise initdb a throwaway cluster under target/pg on port 54329
#      (as the unprivileged user "postgres" when run as root) and start it.
# Prints: export PG_ADMIN_URL=...; export BACKCHANNEL_TEST_ADMIN_URL=...
set -euo pipefail

say() { echo "pg-ensure: $*" >&2; }
url="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() { pg_isready -q -d "$1" -t 2 >/dev/null 2>&1 && psql "$1" -qAtc 'select 1' >/dev/null 2>&1; }
emit() {
  echo "export PG_ADMIN_URL='$1'; export BACKCHANNEL_TEST_ADMIN_URL='$1'"
}

if answers "$url"; then
  emit "$url"; exit 0
fi

if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  for version in $(ls /etc/postgresql 2>/dev/null | sort -rn); do
    say "PostgreSQL is not answering at $url; starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>&1 || true
    for _ in $(seq 1 50); do
      if answers "$url"; then emit "$url"; exit 0; fi
      sleep 0.2
    done
  done
fi

# A throwaway cluster of our own.
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bindir" ] || { say "no PostgreSQL installation found (need initdb)"; exit 1; }
top=$(cd "$(dirname "$0")/.." && pwd)
data="$top/target/pg/data"
port=54329
local_url="postgres://postgres@127.0.0.1:$port/postgres"
if answers "$local_url"; then emit "$local_url"; exit 0; fi
run_as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  run_as=(runuser -u postgres --)
fi
mkdir -p "$top/target/pg"
if [ ! -f "$data/PG_VERSION" ]; then
  say "initialising a throwaway cluster in $data"
  [ "$(id -u)" = 0 ] && chown postgres "$top/target/pg"
  "${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust >&2
fi
say "starting the throwaway cluster on port $port"
[ "$(id -u)" = 0 ] && chown -R postgres "$top/target/pg"
"${run_as[@]}" "$bindir/pg_ctl" -D "$data" -l "$top/target/pg/log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=500" start >&2
answers "$local_url" || { say "the throwaway cluster did not answer"; exit 1; }
emit "$local_url"
