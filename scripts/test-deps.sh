#!/usr/bin/env bash
# Install what `make test` needs beyond Rust and PostgreSQL, when missing:
# psql, nft and ip (the test that drops a vanished peer's packets inside a
# network namespace of its own), openssl (the TLS tests make certificates),
# pgbouncer (the transaction-pooling test), python3's venv (the Python
# client's tests), gcc, pkg-config and libpq-dev (the test that reads
# connection strings with libpq itself, tests/it/ops/conninfo.rs), npm (which
# fetches the PostgreSQL servers of other majors, scripts/pg-versions.sh, for
# `make test-pg-versions` and the tests that need PostgreSQL 17). As root
# with apt-get it installs them; otherwise it says what is missing and fails,
# rather than letting tests be skipped.
set -euo pipefail

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists libpq >/dev/null 2>&1 || missing+=(libpq-dev)
command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 || missing+=(npm)
command -v flock >/dev/null 2>&1 || missing+=(util-linux)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test-deps: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
else
  echo "test-deps: missing ${missing[*]}: install them (as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
