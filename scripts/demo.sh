#!/usr/bin/env bash
# The whole system in one command: a broker, an echo agent and one submit,
# printing the round trip. Run it with `make demo`, which makes sure PostgreSQL
# answers first and exports PG_ADMIN_URL.
#
# DEMO_DB (default backchannel_demo) is dropped and created afresh;
# DEMO_BIND (default 127.0.0.1:8089) is where the broker listens.
# Logs go to target/demo/; both background processes are stopped on exit.
set -euo pipefail

: "${PG_ADMIN_URL:?run this through make demo, or export PG_ADMIN_URL}"
db="${DEMO_DB:-backchannel_demo}"
bind="${DEMO_BIND:-127.0.0.1:8089}"
base="http://$bind"
submitter_token=demo-submitter-token-0000000
listener_token=demo-listener-token-00000000
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/target/debug/backchannel"
logs="$top/target/demo"

say() { echo "==> $*"; }
pretty() { jq . 2>/dev/null || python3 -m json.tool 2>/dev/null || cat; }

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "demo failed: $*" >&2
  for log in "$logs"/broker.log "$logs"/agent.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
  done
  exit 1
}

say "building target/debug/backchannel"
(cd "$top" && cargo build --quiet --bin backchannel)
mkdir -p "$logs"

say "a fresh database: $db"
PGOPTIONS='-c client_min_messages=warning' psql "$PG_ADMIN_URL" -qc "drop database if exists $db with (force)" -c "create database $db" >/dev/null

say "broker on $base (log: target/demo/broker.log)"
DATABASE_URL="${PG_ADMIN_URL%/*}/$db" \
  BACKCHANNEL_BIND="$bind" \
  BACKCHANNEL_SUBMITTER_TOKENS="$submitter_token" \
  BACKCHANNEL_LISTENER_TOKENS="$listener_token" \
  NO_COLOR=1 "$bin" serve >"$logs/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || fail "the broker exited (is $bind in use? set DEMO_BIND)"
  sleep 0.1
done
curl -fsS "$base/readyz" >/dev/null 2>&1 || fail "the broker did not become ready"

say "echo agent: holds the stream, answers every job with its payload (log: target/demo/agent.log)"
BACKCHANNEL_SERVER="$base" \
  BACKCHANNEL_LISTENER_TOKEN="$listener_token" \
  BACKCHANNEL_ECHO=true \
  BACKCHANNEL_LISTENER_ID=demo-agent \
  NO_COLOR=1 "$bin" agent >"$logs/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "stream connected" "$logs/agent.log" 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || fail "the agent exited"
  sleep 0.1
done
grep -q "stream connected" "$logs/agent.log" || fail "the agent did not connect"

job='{"kind": "demo.echo", "payload": {"hello": "from the submitter"}}'
say "submitter: POST /v1/jobs?wait=10  $job"
started=$(date +%s%N)
response=$(curl -sS -H "Authorization: Bearer $submitter_token" \
  -H 'Content-Type: application/json' -d "$job" "$base/v1/jobs?wait=10") \
  || fail "the submit did not get through"
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "$response" | pretty
grep -q '"state":"done"' <<<"$response" || fail "the job did not come back done"

say "round trip in ${elapsed_ms} ms: submitter -> broker -> agent -> broker -> submitter"
say "the agent's log:"
grep -E "stream connected|job_id" "$logs/agent.log" | sed 's/^/    /'
