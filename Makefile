# backchannel: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The broker's database for `make run` (created if missing).
# `make bench` creates and drops a scratch database of its own on the server of
# DATABASE_URL (default: the one scripts/pg-ensure.sh finds); BENCH_ARGS adds flags
# (`./target/release/backchannel-bench --help`).
RUN_DB ?= backchannel
DEV_SUBMITTER_TOKEN ?= dev-submitter-token-0000000000
DEV_LISTENER_TOKEN ?= dev-listener-token-00000000000

PG_ENSURE := eval "$$(scripts/pg-ensure.sh)"

.PHONY: help
help: ## Show this list
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-17s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the release binary (target/release/backchannel)
	cargo build --release

.PHONY: run
run: build ## Run the broker on DATABASE_URL (default: a local "backchannel" database, created if missing)
	@$(PG_ENSURE); \
	if [ -z "$${DATABASE_URL:-}" ]; then \
	  psql "$$PG_ADMIN_URL" -qAtc "select 1 from pg_database where datname = '$(RUN_DB)'" | grep -q 1 \
	    || psql "$$PG_ADMIN_URL" -qc 'create database "$(RUN_DB)"'; \
	  export DATABASE_URL="$${PG_ADMIN_URL%/*}/$(RUN_DB)"; \
	fi; \
	export BACKCHANNEL_SUBMITTER_TOKENS="$${BACKCHANNEL_SUBMITTER_TOKENS:-$(DEV_SUBMITTER_TOKEN)}"; \
	export BACKCHANNEL_LISTENER_TOKENS="$${BACKCHANNEL_LISTENER_TOKENS:-$(DEV_LISTENER_TOKEN)}"; \
	echo "backchannel on http://$${BACKCHANNEL_BIND:-127.0.0.1:8080}  database: $${DATABASE_URL}"; \
	echo "  submitter token: $$BACKCHANNEL_SUBMITTER_TOKENS"; \
	echo "  listener token:  $$BACKCHANNEL_LISTENER_TOKENS"; \
	exec ./target/release/backchannel serve

.PHONY: demo
demo: ## See it work: a broker, an echo agent and one submit, printing the round trip
	@$(PG_ENSURE); scripts/demo.sh

.PHONY: test
test: ## Run every test against a real PostgreSQL (started if it is not running; the test tools installed if missing)
	@scripts/test-deps.sh && $(PG_ENSURE); scripts/deb-previous.sh --binary >/dev/null && \
	cargo test --workspace --all-targets && \
	BACKCHANNEL_BIN="$(CURDIR)/target/debug/backchannel" clients/python/run-tests.sh

# `make test-pg-versions`: the PostgreSQL majors to run (13, the oldest the
# README claims, to 18; binaries from scripts/pg-versions.sh) and the tests run
# on each. The subset is every test whose database is the server under test and
# whose SQL depends on it: the wire (api::), the SQL API and the broker's own
# statements (sql::), the stream's advisory lock and takeover (api::stream,
# agent::stream, faults::processes), LISTEN/NOTIFY and waking (api::wait,
# faults::hangups, faults::group_commit), bad rows (faults::poison), killed
# backends, the DBA's timeouts, grants and start-up checks (ops::privileges,
# ops::check), the views and metrics read from the database. Left out: tests
# that start a server of their own (TempCluster: a restart, a full server, a
# silent peer, TLS, read-only; they test Debian's PostgreSQL whatever the
# major) and those whose server plays no part (docs, the command line, logs,
# the agent's handler side, PgBouncer, libpq's parser). All of `tests/it`
# passes on 13 too (PG_VERSIONS_TESTS= runs it, about 70 s a major).
PG_VERSIONS ?= 13 14 15 16 17 18
PG_VERSIONS_TESTS ?= api:: sql:: faults:: agent::stream ops::check ops::dba_settings::dedicated \
  ops::metrics ops::privileges ops::views \
  --skip faults::database::postgres_restart --skip faults::database::a_full_server \
  --skip faults::silent --skip faults::pg_major --skip faults::shared_backends

.PHONY: test-pg-versions
test-pg-versions: ## The server-facing integration tests on PostgreSQL 13 to 18 in turn (PG_VERSIONS="13 18" for some; one summary line each)
	@scripts/test-deps.sh && scripts/test-pg-versions.sh "$(PG_VERSIONS)" $(PG_VERSIONS_TESTS)

.PHONY: test-python
test-python: ## The Python client: mypy --strict, ruff, pytest against a real broker (venv in target/python-venv)
	@$(PG_ENSURE); clients/python/run-tests.sh

# Generated cases per API operation for `make fuzz`.
FUZZ_EXAMPLES ?= 100

.PHONY: fuzz
fuzz: ## Run schemathesis against a broker on a scratch database, from docs/openapi.yaml (FUZZ_EXAMPLES=100 per operation)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) scripts/fuzz.sh

.PHONY: bench
bench: ## Load test (notify vs poll, 1 and 3 instances, raw SQL floor, idle cost, sealed jobs); QUICK=1 for a short smoke run; report in target/bench/
	@$(PG_ENSURE); cargo build --release --workspace && \
	DATABASE_URL="$${DATABASE_URL:-$$PG_ADMIN_URL}" ./target/release/backchannel-bench \
	  $(if $(filter 1 yes true,$(QUICK)),--quick) $(BENCH_ARGS)

.PHONY: deb
deb: ## Build the Debian package target/debian/backchannel_<version>_<arch>.deb (installs cargo-deb if missing)
	@command -v cargo-deb >/dev/null || { echo "installing cargo-deb (cargo install cargo-deb --locked)"; cargo install cargo-deb --locked; }
	cargo build --release --workspace
	rm -rf target/manual && ./target/release/backchannel manual target/manual
	cargo deb --no-build --strip --output target/debian/

# The package's version (Cargo's): target/debian/ may hold older packages too.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)

.PHONY: deb-check
deb-check: deb ## As root: lintian, nginx -t on the docs, install, upgrade from the previous version (built once from git), round trip, purge
	@$(PG_ENSURE); scripts/deb-check.sh target/debian/backchannel_$(VERSION)_*.deb

.PHONY: nginx-check
nginx-check: ## nginx -t on every nginx block of README.md and docs/ (make deb-check runs it too)
	scripts/nginx-check.sh

.PHONY: rules
rules: ## promtool check and unit tests of deploy/prometheus/ (promtool taken from Debian's prometheus package if missing)
	scripts/rules-check.sh

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
