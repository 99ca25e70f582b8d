#!/usr/bin/env bash
# `make test-pg-versions`: the integration tests that exercise the server
# (see PG_VERSIONS_TESTS in the Makefile) against each PostgreSQL major in
# turn, on a throwaway cluster of scripts/pg-versions.sh.
#
#   scripts/test-pg-versions.sh "13 14 15 16 17 18" FILTER...
#
# For each major: start a cluster, run `cargo test --test it FILTER...` with
# BACKCHANNEL_TEST_ADMIN_URL pointing at it, stop it. Every major runs even
# when one fails; the exit status is 1 if any failed. One summary line per
# major at the end; each major's output is kept in target/pg-versions/MAJOR/test.log.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 1 ] || { echo "usage: $0 \"MAJOR...\" [TEST FILTER...]" >&2; exit 2; }
majors=$1
shift

cargo test -p backchannel --test it --no-run --quiet

current=
trap '[ -z "$current" ] || scripts/pg-versions.sh stop "$current"' EXIT

summary=()
failed=0
for major in $majors; do
  echo "== PostgreSQL $major"
  started=$SECONDS
  mkdir -p "target/pg-versions/$major"
  log="target/pg-versions/$major/test.log"
  if ! url=$(scripts/pg-versions.sh start "$major"); then
    summary+=("PostgreSQL $major: FAILED (the cluster did not start)")
    failed=1
    continue
  fi
  current=$major
  version=$(psql "$url" -qAtc 'show server_version')
  echo "PostgreSQL $version at $url; output in $log"
  status=0
  BACKCHANNEL_TEST_ADMIN_URL="$url" cargo test -p backchannel --test it -- "$@" >"$log" 2>&1 \
    || status=$?
  if [ "$status" != 0 ]; then
    # cargo's account of the failures (their panics and names).
    sed -n '/^failures:$/,$p' "$log" | head -n 200
  fi
  scripts/pg-versions.sh stop "$major"
  current=
  # "test result: ok. 81 passed; 0 failed; 0 ignored; ..." -> "81 passed, 0 failed"
  result=$(grep -E '^test result:' "$log" | tail -n 1 \
    | sed -E 's/^test result: [A-Za-z]+\. ([0-9]+ passed); ([0-9]+ failed);.*/\1, \2/' || true)
  if [ "$status" = 0 ]; then
    summary+=("PostgreSQL $version: ok, $result ($((SECONDS - started)) s)")
  else
    names=$(grep -E '^test .* FAILED$' "$log" | awk '{print $2}' | sort -u | paste -sd ' ' -)
    summary+=("PostgreSQL $version: FAILED, ${result:-no test result} (${names:+$names; }log $log)")
    failed=1
  fi
done

echo "== PostgreSQL versions"
printf '%s\n' "${summary[@]}"
exit "$failed"
