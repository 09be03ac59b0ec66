#!/usr/bin/env bash
# The project's test command (`make test`):
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. scripts/check-msrv.sh   (the declared rust-version covers the locked dependencies)
#   4. scripts/infra.sh up   (project-local PostgreSQL + nats-server, unless DATABASE_ADMIN_URL /
#                             NATS_URL are given)
#   5. cargo build --workspace --bins   (the end-to-end tests spawn $CHECKOUT_BIN_DIR/<bin>)
#   6. cargo nextest run --workspace --no-fail-fast (or cargo test --workspace) with
#      DATABASE_ADMIN_URL, NATS_URL, CHECKOUT_BIN_DIR, PROMETHEUS_BIN (Debian's prometheus,
#      installed if missing, for the dashboard test), SCHEMATHESIS_BIN (schemathesis from PyPI,
#      pinned in scripts/lib.sh, for the OpenAPI fuzz test) and NATS_SERVER_BIN exported;
#      extra arguments are passed on: scripts/test.sh -E 'test(checkout)'
#   7. docker-compose -f docker-compose.yml config -q   (if docker-compose is installed)
#   8. scripts/compose-test.sh   (the compose stack run for real) when COMPOSE_TEST=1, the default
#      in CI (CI=true): there with the debug binaries just built (COMPOSE_TEST_PROFILE=debug), so no
#      second, release, build; it skips with one line where no Docker engine can start
# PostgreSQL and nats-server keep running afterwards unless TEST_STOP_INFRA=1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$ROOT"
ensure_state_dirs
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"

if [[ "${TEST_STOP_INFRA:-0}" == 1 ]]; then
    trap '"$ROOT/scripts/infra.sh" down || true' EXIT
fi

log "cargo fmt --all -- --check"
cargo fmt --all -- --check || die "formatting differs (run: cargo fmt --all)"

log "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --quiet --workspace --all-targets -- -D warnings || die "clippy found problems"

log "scripts/check-msrv.sh"
"$ROOT/scripts/check-msrv.sh" || die "the declared rust-version is wrong (Cargo.toml)"

log "scripts/infra.sh up"
urls="$("$ROOT/scripts/infra.sh" up)" || die "scripts/infra.sh up failed"
DATABASE_ADMIN_URL="$(sed -n 's/^DATABASE_ADMIN_URL=//p' <<<"$urls")"
NATS_URL="$(sed -n 's/^NATS_URL=//p' <<<"$urls")"
CHECKOUT_BIN_DIR="$ROOT/target/debug"
export DATABASE_ADMIN_URL NATS_URL CHECKOUT_BIN_DIR
# Tests drop their databases when they pass; a failed or killed run leaves
# them behind. They are all named t<12 hex digits>_<service> (testkit).
if pg_bin="$(find_pg_bin_dir)" && [[ -n "$pg_bin" ]]; then
    stale="$("$pg_bin/psql" "$DATABASE_ADMIN_URL" -Atc \
        "SELECT datname FROM pg_database WHERE datname ~ '^t[0-9a-f]{12}_(api|order|stock|payment)\$'" \
        2>/dev/null || true)"
    for db in $stale; do
        "$pg_bin/psql" "$DATABASE_ADMIN_URL" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
            >/dev/null 2>&1 || true
    done
    [[ -z "$stale" ]] || debug "dropped $(wc -w <<<"$stale") stale test databases"
fi
# For tests that start/kill their own nats-server: the pinned version (.env), installed into
# .local/tools if missing; without it only those tests fail, saying why.
if bin="$(ensure_nats_installed && printf '%s\n' "$NATS_SERVER_BIN")"; then
    export NATS_SERVER_BIN="$bin"
else
    warn "nats-server $NATS_SERVER_VERSION is not installed and could not be installed"
fi
# The dashboard test (testkit/tests/dashboards.rs) runs a real Prometheus. Installing it may be
# impossible here (not root, no network): then only that test fails, saying why.
if PROMETHEUS_BIN="$(ensure_prometheus_installed && find_prometheus)"; then
    export PROMETHEUS_BIN
else
    unset PROMETHEUS_BIN
    warn "prometheus is not installed and could not be installed: the dashboard test will fail"
fi

# The OpenAPI fuzz test (testkit/tests/schemathesis.rs) runs schemathesis against the live api.
if ensure_schemathesis_installed; then
    export SCHEMATHESIS_BIN
else
    unset SCHEMATHESIS_BIN
    warn "schemathesis could not be installed: the OpenAPI fuzz test will fail"
fi

log "cargo build --workspace --bins"
cargo build --quiet --workspace --bins || die "cargo build failed"

rc=0
if cargo nextest --version >/dev/null 2>&1; then
    # CI uses the nextest `ci` profile when .config/nextest.toml defines one.
    if [[ "${CI:-}" == true && -z "${NEXTEST_PROFILE:-}" ]] &&
        grep -qs '^\[profile\.ci\]' "$ROOT/.config/nextest.toml"; then
        export NEXTEST_PROFILE=ci
    fi
    log "cargo nextest run --workspace --no-fail-fast $*"
    cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
else
    log "cargo test --workspace --no-fail-fast $*"
    cargo test --workspace --no-fail-fast "$@" || rc=$?
fi
((rc == 0)) || warn "tests failed (exit $rc)"

if command -v docker-compose >/dev/null 2>&1; then
    log "docker-compose -f docker-compose.yml config -q"
    # The compose file requires a webhook secret; any valid one checks the file.
    WEBHOOK_SECRET="${WEBHOOK_SECRET:-whsec_Y29tcG9zZS1jb25maWctY2hlY2s=}" \
        docker-compose -f docker-compose.yml config -q || {
        warn "docker-compose.yml is invalid"
        rc=1
    }
else
    debug "docker-compose not installed: skipping the compose file check"
fi

if [[ "${COMPOSE_TEST:-${CI:-false}}" == 1 || "${COMPOSE_TEST:-${CI:-false}}" == true ]]; then
    log "scripts/compose-test.sh"
    COMPOSE_TEST_PROFILE="${COMPOSE_TEST_PROFILE:-debug}" "$ROOT/scripts/compose-test.sh" || {
        warn "the compose stack test failed"
        rc=1
    }
else
    debug "compose stack test not run (COMPOSE_TEST=1, or make compose-test)"
fi

if ((rc == 0)); then
    log "all checks passed"
fi
exit "$rc"
