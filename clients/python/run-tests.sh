#!/usr/bin/env bash
# The Python client's checks: mypy --strict and ruff on the package, then
# pytest against a real broker and a real PostgreSQL.
#
#   clients/python/run-tests.sh [pytest arguments]
#
# - Creates (or reuses) the virtualenv target/python-venv with the package
#   (editable) and requirements-test.txt; reinstalls when either of those files
#   or pyproject.toml changes.
# - PostgreSQL: $BACKCHANNEL_TEST_ADMIN_URL (a superuser URL, as `make test`
#   exports it), else whatever scripts/pg-ensure.sh finds or starts.
# - The broker: $BACKCHANNEL_BIN, else target/debug/backchannel (built with
#   `cargo build` only if it is missing: after changing the Rust code, rebuild
#   it, or run `make test`, which passes the binary `cargo test` just built).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
venv="$top/target/python-venv"
say() { echo "python-tests: $*" >&2; }

wanted=$(cat "$here/pyproject.toml" "$here/requirements-test.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.installed" 2>/dev/null)" != "$wanted" ]; then
  say "installing the package and its test tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -e "$here" -r "$here/requirements-test.txt"
  echo "$wanted" >"$venv/.installed"
fi

if [ -z "${BACKCHANNEL_TEST_ADMIN_URL:-}" ]; then
  eval "$("$top/scripts/pg-ensure.sh")"
fi
if [ -z "${BACKCHANNEL_BIN:-}" ] && [ ! -x "$top/target/debug/backchannel" ]; then
  say "building target/debug/backchannel"
  (cd "$top" && cargo build --quiet --bin backchannel)
fi

cd "$here"
say "mypy --strict"
"$venv/bin/mypy" --strict
say "ruff"
"$venv/bin/ruff" check src tests
"$venv/bin/ruff" format --check src tests
say "pytest"
exec "$venv/bin/pytest" "$@"
