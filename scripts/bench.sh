#!/usr/bin/env bash
# The benchmark suite (`make bench`): brings the local system up if it is not answering, measures
# ceilings on the same machine in the same run, runs the default suite and writes the report.
#
#   1. pgbench ceilings on the same PostgreSQL, in a scratch database `bench_ceiling` this script
#      creates (and leaves behind): one checkout-shaped transaction per checkout (UPDATE a random
#      item's stock, UPDATE a random user's credit, INSERT a ledger row; prepared statements,
#      PGBENCH_CHECKOUT_CLIENTS, 32), the ceiling for `stress` and for the curve; and a single-row
#      hot `UPDATE items SET stock = stock - 1 WHERE id = 1`, the ceiling for `consistency`;
#   2. harness ceiling: `bench ceiling` (closed loop against GET /health);
#   3. `bench consistency` (the standard workload; its verdict decides the exit status);
#   4. `bench stress` (closed loop, 64 clients, 30 s);
#   5. `bench async` (long-polling);
#   6. the latency curve (BENCH_CURVE=0 skips it): `bench sweep` closed loop at
#      BENCH_CURVE_CLIENTS (1,64,256,1024; every level runs), then open loop at BENCH_CURVE_RATES
#      (100,500,1000,2000,3000,4000,5000,6000,8000 checkouts/s; it stops one step after the first
#      saturated one: offered rate not achieved, or errors + dropped over 1 %), each step
#      BENCH_CURVE_STEP (10s) after BENCH_CURVE_WARMUP (1s), on a fresh `batch_init` of
#      BENCH_ITEMS/USERS/ORDERS (a million orders, as `stress`). Every checkout of a sweep is of
#      an order not checked out before: orders in sequence, `batch_init` again before a step
#      that could need more than the unpaid ones left, each step capped at those (so it never
#      checks out a paid order, which answers at once). Cost: two `batch_init`s (5 s each for a
#      million orders) and at most 4 + 9 steps of 11 s: 2.5 minutes measured on this 2-core
#      machine, with a million orders ample (no step needed a second `batch_init`). The whole
#      default `make bench` took 4.5 minutes here with the binaries built and NATS_NODES=1;
#      NATS_NODES=3 adds step 8 (a restart each way and one more `stress`, about 2 minutes), a
#      cold release build its own time. Results curve-closed.json,
#      curve-open.json; the report's "Latency against load" section;
#      optionally also `bench sweep` over more client counts (BENCH_SWEEP=1, fresh data too);
#   7. `bench report`: report.md with our figures next to the ceilings as ratios, the curve's plots
#      and table (ratios to the pgbench checkout ceiling), and SVG plots.
#   8. with NATS_NODES=3 (the suite ran on the local three-node cluster, R3 streams): the cost of
#      R3. The system is restarted on one nats-server with `sync_interval: always`
#      (nats/local-durable.conf, R1), the same `stress` run repeated (stress-r1.json), the cluster
#      restored, and report.md gains a table of throughput and latency of R1 next to R3. Both
#      sides have the durability the README recommends against losing a machine (R3: replication,
#      R1: fsync per write). BENCH_COMPARE_R1=0 skips it.
#
# Results: bench/results/<timestamp>/ (or $BENCH_OUT_DIR): one JSON per run, pgbench.txt,
# report.md, *.svg. Exit status: 0 if every step ran and consistency passed, 1 otherwise.
#
# Env (defaults): BENCH_BASE_URL (http://127.0.0.1:8000), BENCH_OUT_DIR, BENCH_LABEL (ours),
#   BENCH_CLIENTS (64), BENCH_DURATION (30s), BENCH_WARMUP (3s),
#   BENCH_CEILING_DURATION (10s), BENCH_ASYNC_CLIENTS (32), BENCH_ASYNC_DURATION (10s),
#   BENCH_ITEMS / BENCH_USERS / BENCH_ORDERS (100000, 100000, 1000000),
#   BENCH_CURVE (1), BENCH_CURVE_CLIENTS (1,64,256,1024),
#   BENCH_CURVE_RATES (100,500,1000,2000,3000,4000,5000,6000,8000), BENCH_CURVE_STEP (10s),
#   BENCH_CURVE_WARMUP (1s),
#   BENCH_SWEEP (0), BENCH_SWEEP_CLIENTS (1,2,4,8,16,32,64,128,256), BENCH_SWEEP_STEP (10s),
#   PGBENCH_CLIENTS (8), PGBENCH_THREADS (2), PGBENCH_DURATION (20), SKIP_PGBENCH (0),
#   DATABASE_ADMIN_URL (postgres://postgres@127.0.0.1:15432/postgres), PGBENCH (path),
#   BENCH_BIN (a prebuilt harness; default: cargo build --release -p bench),
#   BENCH_NO_UP (1 = never start the system, fail if it does not answer),
#   NATS_NODES (3 = the system runs on the local cluster; see step 8), BENCH_COMPARE_R1 (1).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if (($# > 0)); then
    case "$1" in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$1' (configure with environment variables, see --help)" ;;
    esac
fi

BASE_URL="${BENCH_BASE_URL:-http://127.0.0.1:8000}"
OUT="${BENCH_OUT_DIR:-bench/results/$(date +%Y%m%d-%H%M%S)}"
LABEL="${BENCH_LABEL:-ours}"
CLIENTS="${BENCH_CLIENTS:-64}"
DURATION="${BENCH_DURATION:-30s}"
WARMUP="${BENCH_WARMUP:-3s}"
CEILING_DURATION="${BENCH_CEILING_DURATION:-10s}"
ASYNC_CLIENTS="${BENCH_ASYNC_CLIENTS:-32}"
ASYNC_DURATION="${BENCH_ASYNC_DURATION:-10s}"
ITEMS="${BENCH_ITEMS:-100000}"
USERS="${BENCH_USERS:-100000}"
ORDERS="${BENCH_ORDERS:-1000000}"
PGBENCH_CLIENTS="${PGBENCH_CLIENTS:-8}"
PGBENCH_CHECKOUT_CLIENTS="${PGBENCH_CHECKOUT_CLIENTS:-32}"
PGBENCH_THREADS="${PGBENCH_THREADS:-2}"
PGBENCH_DURATION="${PGBENCH_DURATION:-20}"
export BENCH_BASE_URL="$BASE_URL" BENCH_OUT_DIR="$OUT" BENCH_LABEL="$LABEL"
mkdir -p "$OUT"
failures=()

# --- the harness (release build: a debug harness would understate every figure)
if [[ -z "${BENCH_BIN:-}" ]]; then
    log "building the harness (cargo build --release -p bench)"
    cargo build --release -q -p bench
    BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/bench"
fi
[[ -x "$BENCH_BIN" ]] || die "no harness binary at $BENCH_BIN"

# --- the system
if curl -fsS -o /dev/null --max-time 2 "$BASE_URL/health" 2>/dev/null; then
    log "system already answering at $BASE_URL"
elif [[ "${BENCH_NO_UP:-0}" == 1 ]]; then
    die "nothing answers at $BASE_URL/health (BENCH_NO_UP=1)"
elif [[ -x "$ROOT/scripts/up.sh" ]]; then
    log "starting the system (scripts/up.sh)"
    "$ROOT/scripts/up.sh" >&2
elif [[ -f "$ROOT/Makefile" ]] && grep -qE '^up:' "$ROOT/Makefile"; then
    log "starting the system (make up)"
    make -C "$ROOT" up >&2
else
    die "nothing answers at $BASE_URL/health and there is no scripts/up.sh or make up"
fi
wait_for_http "$BASE_URL/health" 120 || die "$BASE_URL/health did not answer within 120 s"

# --- ceiling 1: pgbench, single-row UPDATE on the same PostgreSQL
pgbench_ceiling() {
    local admin url script psql pgbench_bin bindir
    admin="$(admin_url)"
    url="$(db_url "$admin" bench_ceiling)"
    bindir="$(find_pg_bin_dir)"
    pgbench_bin="${PGBENCH:-}"
    if [[ -z "$pgbench_bin" ]]; then
        if [[ -n "$bindir" && -x "$bindir/pgbench" ]]; then
            pgbench_bin="$bindir/pgbench"
        else
            pgbench_bin="$(command -v pgbench || true)"
        fi
    fi
    [[ -n "$pgbench_bin" && -x "$pgbench_bin" ]] || {
        warn "pgbench not found (set PGBENCH=/path/to/pgbench); skipping the PostgreSQL ceiling"
        return 0
    }
    psql="$(command -v psql || true)"
    [[ -z "$psql" && -n "$bindir" && -x "$bindir/psql" ]] && psql="$bindir/psql"
    [[ -n "$psql" ]] || {
        warn "psql not found; skipping the PostgreSQL ceiling"
        return 0
    }
    log "pgbench ceiling: creating scratch database bench_ceiling"
    local exists
    if ! exists="$("$psql" "$admin" -XtAqc "SELECT 1 FROM pg_database WHERE datname = 'bench_ceiling'")"; then
        warn "cannot reach PostgreSQL at $admin; skipping the PostgreSQL ceiling"
        failures+=("pgbench")
        return 0
    fi
    if [[ "$exists" != 1 ]] && ! "$psql" "$admin" -XqAc "CREATE DATABASE bench_ceiling" >/dev/null; then
        warn "cannot create database bench_ceiling; skipping the PostgreSQL ceiling"
        failures+=("pgbench")
        return 0
    fi
    PGOPTIONS="-c client_min_messages=warning" "$psql" "$url" -XqA -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || {
CREATE TABLE IF NOT EXISTS items (
    id    BIGINT PRIMARY KEY,
    stock BIGINT NOT NULL CHECK (stock >= 0),
    price BIGINT NOT NULL CHECK (price >= 0)
);
INSERT INTO items (id, stock, price) VALUES (1, 1000000000000, 1)
ON CONFLICT (id) DO UPDATE SET stock = EXCLUDED.stock;
SQL
        warn "cannot create the scratch table in bench_ceiling; skipping the PostgreSQL ceiling"
        failures+=("pgbench")
        return 0
    }
    # The checkout-shaped ceiling: one naive transaction per checkout over as many items and
    # users as the stress workload (ledger emptied first, so every run starts alike).
    PGOPTIONS="-c client_min_messages=warning" "$psql" "$url" -XqA -v ON_ERROR_STOP=1 >/dev/null <<SQL || {
CREATE TABLE IF NOT EXISTS co_items (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL CHECK (stock >= 0));
CREATE TABLE IF NOT EXISTS co_users (id BIGINT PRIMARY KEY, credit BIGINT NOT NULL CHECK (credit >= 0));
CREATE TABLE IF NOT EXISTS co_ledger (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item BIGINT NOT NULL, user_id BIGINT NOT NULL, amount BIGINT NOT NULL);
TRUNCATE co_items, co_users, co_ledger;
INSERT INTO co_items SELECT g, 1000000000000 FROM generate_series(0, $ITEMS - 1) g;
INSERT INTO co_users SELECT g, 1000000000000 FROM generate_series(0, $USERS - 1) g;
VACUUM ANALYZE co_items, co_users;
SQL
        warn "cannot create the checkout-shaped tables in bench_ceiling"
        failures+=("pgbench")
        return 0
    }
    script="$(mktemp)"
    cat >"$script" <<PGB
\\set item random(0, $((ITEMS - 1)))
\\set user random(0, $((USERS - 1)))
BEGIN;
UPDATE co_items SET stock = stock - 1 WHERE id = :item;
UPDATE co_users SET credit = credit - 2 WHERE id = :user;
INSERT INTO co_ledger (item, user_id, amount) VALUES (:item, :user, 2);
END;
PGB
    log "pgbench checkout-shaped ceiling: -c $PGBENCH_CHECKOUT_CLIENTS -j $PGBENCH_THREADS -T $PGBENCH_DURATION"
    if "$pgbench_bin" -n -M prepared -c "$PGBENCH_CHECKOUT_CLIENTS" -j "$PGBENCH_THREADS" \
        -T "$PGBENCH_DURATION" -f "$script" "$url" >"$OUT/pgbench-checkout.txt" 2>"$OUT/pgbench-checkout.err"; then
        grep -E '^(tps|latency average)' "$OUT/pgbench-checkout.txt" >&2 || true
    else
        cat "$OUT/pgbench-checkout.err" >&2
        failures+=("pgbench")
    fi
    rm -f "$script"

    script="$(mktemp)"
    printf 'UPDATE items SET stock = stock - 1 WHERE id = 1;\n' >"$script"
    log "pgbench ceiling: -c $PGBENCH_CLIENTS -j $PGBENCH_THREADS -T $PGBENCH_DURATION"
    if "$pgbench_bin" -n -c "$PGBENCH_CLIENTS" -j "$PGBENCH_THREADS" -T "$PGBENCH_DURATION" \
        -f "$script" "$url" >"$OUT/pgbench.txt" 2>"$OUT/pgbench.err"; then
        grep -E '^(tps|latency average)' "$OUT/pgbench.txt" >&2 || true
    else
        cat "$OUT/pgbench.err" >&2
        failures+=("pgbench")
    fi
    rm -f "$script"
}
if [[ "${SKIP_PGBENCH:-0}" != 1 ]]; then
    pgbench_ceiling
fi

# --- the harness runs; a failing step is recorded and the suite goes on
run_step() {
    local name="$1"
    shift
    log "bench $*"
    local rc=0
    "$BENCH_BIN" "$@" || rc=$?
    if ((rc != 0)); then
        warn "step $name exited with status $rc"
        failures+=("$name")
    fi
}

run_step ceiling ceiling --clients "$CLIENTS" --duration "$CEILING_DURATION"
run_step consistency consistency
run_step stress stress --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
    --items "$ITEMS" --users "$USERS" --orders "$ORDERS"
run_step async async --clients "$ASYNC_CLIENTS" --duration "$ASYNC_DURATION" \
    --items "$ITEMS" --users "$USERS" --orders "$ORDERS"
if [[ "${BENCH_CURVE:-1}" == 1 ]]; then
    curve_clients="${BENCH_CURVE_CLIENTS:-1,64,256,1024}"
    curve_step=(--step-duration "${BENCH_CURVE_STEP:-10s}" --warmup "${BENCH_CURVE_WARMUP:-1s}"
        --items "$ITEMS" --users "$USERS" --orders "$ORDERS")
    # Every client count runs: the curve wants each level, saturated or not.
    IFS=, read -ra levels <<<"$curve_clients"
    run_step curve-closed --name curve-closed sweep --clients-list "$curve_clients" \
        --steps-after-saturation "${#levels[@]}" "${curve_step[@]}"
    run_step curve-open --name curve-open sweep \
        --rates "${BENCH_CURVE_RATES:-100,500,1000,2000,3000,4000,5000,6000,8000}" "${curve_step[@]}"
fi
# On fresh data (no --skip-init): the orders earlier steps paid would check out at once.
if [[ "${BENCH_SWEEP:-0}" == 1 ]]; then
    run_step sweep sweep --clients-list "${BENCH_SWEEP_CLIENTS:-1,2,4,8,16,32,64,128,256}" \
        --step-duration "${BENCH_SWEEP_STEP:-10s}" \
        --items "$ITEMS" --users "$USERS" --orders "$ORDERS"
fi

# --- the cost of R3: the same stress run on one nats-server (R1), then the cluster again
compare_r1_r3() {
    if [[ -n "${NATS_URL:-}" ]]; then
        warn "NATS_URL is set (not the local cluster): skipping the R1/R3 comparison"
        return 0
    fi
    if [[ ! -f "$RUN_DIR/api.pid" || ! -f "$RUN_DIR/nats-1.pid" ]]; then
        warn "the system does not run on the cluster of NATS_NODES=3 scripts/up.sh: skipping the R1/R3 comparison"
        return 0
    fi
    log "R1/R3: restarting the system on one nats-server (nats/local-durable.conf, R1)"
    "$ROOT/scripts/down.sh" --keep-infra >&2
    NATS_NODES=3 INFRA_SKIP_PG=1 "$ROOT/scripts/infra.sh" down
    local rc=0
    (
        unset NATS_STREAM_REPLICAS
        export NATS_NODES=1 NATS_LOCAL_CONF="$ROOT/nats/local-durable.conf" SKIP_BUILD=1
        "$ROOT/scripts/up.sh" >&2
        wait_for_http "$BASE_URL/health" 120 || die "$BASE_URL/health did not answer on R1"
        "$BENCH_BIN" stress --name stress-r1 --label "$LABEL R1" --clients "$CLIENTS" \
            --duration "$DURATION" --warmup "$WARMUP" \
            --items "$ITEMS" --users "$USERS" --orders "$ORDERS"
    ) || rc=$?
    ((rc == 0)) || failures+=("stress-r1")
    log "R1/R3: back to the cluster (R3)"
    "$ROOT/scripts/down.sh" --keep-infra >&2
    NATS_NODES=1 INFRA_SKIP_PG=1 "$ROOT/scripts/infra.sh" down
    NATS_NODES=3 SKIP_BUILD=1 "$ROOT/scripts/up.sh" >&2 || failures+=("restore-cluster")
    python3 - "$OUT" >"$OUT/r1-vs-r3.md" <<'PY' || failures+=("r1-vs-r3")
import json, os, sys

out = sys.argv[1]
def load(stem):
    with open(os.path.join(out, stem + ".json")) as f:
        return json.load(f)["result"]["load"]
r3, r1 = load("stress"), load("stress-r1")
def row(name, key, fmt):
    a, b = r1, r3
    for k in key:
        a, b = a[k], b[k]
    ratio = f"{b / a:.2f}" if a else "-"
    return f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |"
print("## Cost of R3: the same `stress` run on one nats-server (R1) and on the three-node cluster (R3)\n")
print("R1: one nats-server, `sync_interval: always` (nats/local-durable.conf). "
      "R3: three nodes on this machine, streams replicated three ways, default sync "
      "(nats/cluster/node.conf). Same machine, same PostgreSQL, one after the other.\n")
print("| measure | R1 | R3 | R3 / R1 |")
print("|---|---:|---:|---:|")
print(row("checkouts/s", ["throughput_rps"], "{:,.0f}"))
print(row("latency p50 (ms)", ["latency", "p50_ms"], "{:.1f}"))
print(row("latency p99 (ms)", ["latency", "p99_ms"], "{:.1f}"))
print(row("completed", ["completed"], "{:,}"))
PY
}
if [[ "$NATS_NODES" == 3 && "${BENCH_COMPARE_R1:-1}" == 1 ]]; then
    compare_r1_r3
fi

report="$("$BENCH_BIN" report "$OUT")"
if [[ -s "$OUT/r1-vs-r3.md" ]]; then
    printf '\n' >>"$OUT/report.md"
    cat "$OUT/r1-vs-r3.md" >>"$OUT/report.md"
    cat "$OUT/r1-vs-r3.md" >&2
fi
log "report: $report"
printf '%s\n' "$report"
if ((${#failures[@]} > 0)); then
    warn "failed steps: ${failures[*]}"
    exit 1
fi
