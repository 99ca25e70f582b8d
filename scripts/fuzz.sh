#!/usr/bin/env bash
# make fuzz: schemathesis against a broker started on a scratch database.
#
#   scripts/fuzz.sh            # FUZZ_EXAMPLES (default 100) cases per operation
#
# Installs schemathesis into a virtualenv under target/, starts PostgreSQL if
# needed (scripts/pg-ensure.sh), creates a scratch database, starts
# `backchannel serve` on a free port with fresh tokens of every role, and runs
# every phase and check against the document the broker serves. The database
# and the broker are removed on exit.
#
# Every check runs but use_after_free: DELETE cancels a job, and the cancelled
# job stays readable until the retention period removes it, by design.
#
# GET /v1/stream never ends by itself: scripts/schemathesis.toml has each case
# read it for at most a second (or three events), and checks what it read.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
examples="${FUZZ_EXAMPLES:-100}"
venv=target/fuzz-venv
say() { echo "fuzz: $*" >&2; }

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin backchannel
eval "$(scripts/pg-ensure.sh)"

db="bc_fuzz_$(date +%s)_$$"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
log="target/fuzz-broker.log"
broker=""
cleanup() {
  if [ -n "$broker" ]; then kill "$broker" 2>/dev/null || true; wait "$broker" 2>/dev/null || true; fi
  psql "$PG_ADMIN_URL" -qc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$PG_ADMIN_URL" -qc "create database $db"

FUZZ_SUBMITTER_TOKEN="fuzz-submitter-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
FUZZ_LISTENER_TOKEN="fuzz-listener-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
FUZZ_MONITOR_TOKEN="fuzz-monitor-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
export FUZZ_SUBMITTER_TOKEN FUZZ_LISTENER_TOKEN FUZZ_MONITOR_TOKEN

# Short limits keep every generated `wait` and `timeout` short; the served
# document states them, so generated data stays within what the broker takes.
DATABASE_URL="${PG_ADMIN_URL%/*}/$db" \
BACKCHANNEL_BIND="127.0.0.1:$port" \
BACKCHANNEL_SUBMITTER_TOKENS="$FUZZ_SUBMITTER_TOKEN" \
BACKCHANNEL_LISTENER_TOKENS="$FUZZ_LISTENER_TOKEN" \
BACKCHANNEL_MONITOR_TOKENS="$FUZZ_MONITOR_TOKEN" \
BACKCHANNEL_MAX_TIMEOUT=2 \
BACKCHANNEL_DEFAULT_TIMEOUT=1 \
BACKCHANNEL_POOL_SIZE=4 \
RUST_LOG="${FUZZ_LOG:-warn}" \
NO_COLOR=1 \
  target/debug/backchannel serve >"$log" 2>&1 &
broker=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$broker" 2>/dev/null || { say "the broker exited; its log:"; cat "$log" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null || { say "the broker never became ready"; exit 1; }

say "$examples cases per operation against $base (broker log: $log)"
# One worker: CPython 3.11's ast.parse, which hypothesis calls to describe
# its filters, can fail with "AST constructor recursion depth mismatch" when
# several threads parse at once (seen in CI with --workers 2).
status=0
"$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --url "$base" \
  --checks all \
  --exclude-checks use_after_free \
  --max-examples "$examples" \
  --workers 1 \
  --seed "${FUZZ_SEED:-$RANDOM}" \
  --report junit --report-dir target/fuzz-report \
  "$@" || status=$?
# A panic or an error the broker logged fails the run even if every response
# looked right; warnings are shown.
if grep -E ' WARN ' "$log" >/dev/null; then
  say "the broker logged warnings:"; grep -E ' WARN ' "$log" >&2
fi
if grep -E 'panicked| ERROR ' "$log" >/dev/null; then
  say "the broker logged errors or panicked:"; grep -E -A3 'panicked| ERROR ' "$log" >&2
  status=1
fi
exit "$status"
