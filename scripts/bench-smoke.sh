#!/usr/bin/env bash
# Smoke test of the benchmark harness against an already running system at $BENCH_BASE_URL
# (default http://127.0.0.1:8000): runs every subcommand briefly, checks the shape of each JSON
# result and that `consistency` passed. Exit status non-zero otherwise.
#
# Env: BENCH_BASE_URL, BENCH_BIN (prebuilt harness; default: cargo build -p bench),
#      BENCH_OUT_DIR (default: a fresh bench/results/smoke-<timestamp>),
#      BENCH_SMOKE_WEBHOOK=1 to also run `async --webhook` (the API must allow the harness's
#      loopback receiver: WEBHOOK_ALLOW_PRIVATE=true; signatures are verified with
#      BENCH_WEBHOOK_SECRET, default: the secret `make up` keeps in .local/secrets/webhook_secret),
#      BENCH_SOAK_PIDS (api=PID,order-svc=PID,…) and BENCH_SOAK_LOG_DIR for `soak` (default:
#      the PID files in .local/run and the logs in .local/log, as `make up` leaves them).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

BASE_URL="${BENCH_BASE_URL:-http://127.0.0.1:8000}"
OUT="${BENCH_OUT_DIR:-bench/results/smoke-$(date +%Y%m%d-%H%M%S)}"
export BENCH_BASE_URL="$BASE_URL" BENCH_OUT_DIR="$OUT"
mkdir -p "$OUT"

if [[ -z "${BENCH_BIN:-}" ]]; then
    cargo build -q -p bench
    BENCH_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/bench"
fi
[[ -x "$BENCH_BIN" ]] || die "no harness binary at $BENCH_BIN"
wait_for_http "$BASE_URL/health" 60 || die "nothing answers at $BASE_URL/health"

SMALL=(--items 1000 --users 1000 --orders 1000)
status=0
# step NAME ARGS...: runs `bench ARGS... --name NAME`, keeps its stdout in NAME.stdout.
step() {
    local name="$1" rc=0
    shift
    log "bench $*"
    "$BENCH_BIN" --no-progress --name "$name" "$@" >"$OUT/$name.stdout" || rc=$?
    if ((rc != 0)); then
        warn "bench $1 ($name) exited with status $rc"
        cat "$OUT/$name.stdout" >&2 || true
        status=1
    fi
}

step consistency consistency
step stress stress "${SMALL[@]}" --duration 3s --clients 8
step stress-open stress "${SMALL[@]}" --skip-init --duration 3s --rate 100 \
    --mix checkout=8,read=1,add=1
step async async "${SMALL[@]}" --skip-init --duration 3s --clients 8 --final-timeout 20s
if [[ "${BENCH_SMOKE_WEBHOOK:-0}" == 1 ]]; then
    if [[ -z "${BENCH_WEBHOOK_SECRET:-}" && -r "$SECRETS_DIR/webhook_secret" ]]; then
        BENCH_WEBHOOK_SECRET="$(read_secret webhook_secret)"
        export BENCH_WEBHOOK_SECRET
    fi
    step async-webhook async "${SMALL[@]}" --skip-init --duration 3s --clients 8 --webhook \
        --final-timeout 20s
fi
step ceiling ceiling --duration 2s --warmup 0s --clients 8
# Fresh data: a sweep checks out each order once, the earlier steps paid some.
step sweep sweep "${SMALL[@]}" --clients-list 1,4 --step-duration 1s --warmup 0s
# A fresh set of orders, so that the soak's checkouts are new ones.
step soak soak --items 1000 --users 1000 --orders 2000 --duration 6s --interval 2s \
    --probe-duration 2s --probe-clients 4
"$BENCH_BIN" report "$OUT" >/dev/null || status=1

python3 - "$OUT" <<'PY' || status=1
import json, os, sys

out = sys.argv[1]
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

def num(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None

def latency_ok(name, lat):
    for k in ("count", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"):
        need(num(lat, k) is not None, f"{name}: latency.{k} missing")
    if all(num(lat, k) is not None for k in ("p50_ms", "p99_ms", "max_ms")):
        need(lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"] + 1e-9, f"{name}: percentiles not ordered")

def load_ok(name, load, need_2xx=True):
    for k in ("throughput_rps", "goodput_rps", "completed", "issued", "dropped", "unfinished",
              "completed_after_window", "window_s"):
        need(num(load, k) is not None, f"{name}: load.{k} missing")
    need(isinstance(load.get("counts"), dict), f"{name}: counts missing")
    need(isinstance(load.get("status_codes"), dict), f"{name}: status_codes missing")
    need(isinstance(load.get("timeline"), list) and load["timeline"], f"{name}: empty timeline")
    need(isinstance(load.get("mode"), dict) and load["mode"].get("loop") in ("closed", "open"), f"{name}: mode")
    latency_ok(name, load.get("latency", {}))
    need((num(load, "completed") or 0) > 0, f"{name}: nothing completed")
    if need_2xx:
        need((num(load, "counts", "ok") or 0) > 0, f"{name}: no 2xx answer")

def envelope(stem, kind):
    path = os.path.join(out, stem + ".json")
    if not os.path.exists(path):
        errors.append(f"{stem}.json missing")
        return None
    with open(path) as f:
        env = json.load(f)
    for k in ("schema", "kind", "status", "base_url", "started_at", "finished_at", "params", "result", "host"):
        need(k in env, f"{stem}: {k} missing")
    need(env.get("schema") == "bench-result/v1", f"{stem}: schema {env.get('schema')!r}")
    need(env.get("kind") == kind, f"{stem}: kind {env.get('kind')!r}")
    return env.get("result", {})

r = envelope("consistency", "consistency")
if r is not None:
    with open(os.path.join(out, "consistency.json")) as f:
        st = json.load(f)["status"]
    need(st == "pass", f"consistency: status {st!r}, expected 'pass'")
    v = r.get("verdict", {})
    need(v.get("status") == "pass", "consistency: verdict not pass")
    need(isinstance(v.get("checks"), list) and len(v["checks"]) >= 8, "consistency: checks missing")
    need(all(c.get("passed") for c in v.get("checks", [])), "consistency: a check failed")
    need(len(r.get("answers", [])) == v.get("checkouts"), "consistency: answers not recorded")
    for k in ("units_sold", "credit_removed", "answered_2xx", "answered_4xx", "answered_error"):
        need(num(v, k) is not None, f"consistency: verdict.{k} missing")
    need(v.get("units_sold") == v.get("units_of_2xx_checkouts"), "consistency: units sold != 2xx units")

for stem in ("stress", "stress-open"):
    r = envelope(stem, "stress")
    if r is not None:
        load_ok(stem, r.get("load", {}))
        if stem == "stress-open":
            need(num(r, "load", "offered_rps") is not None, "stress-open: offered_rps missing")
            need(isinstance(r.get("load", {}).get("send_lag"), dict), "stress-open: send_lag missing")

for stem in ["async"] + (["async-webhook"] if os.environ.get("BENCH_SMOKE_WEBHOOK") == "1" else []):
    r = envelope(stem, "async")
    if r is not None:
        load_ok(stem, r.get("submit", {}), need_2xx=True)
        need((num(r, "accepted") or 0) > 0, f"{stem}: no submission accepted with 202")
        need(num(r, "accept_rate") is not None, f"{stem}: accept_rate missing")
        latency_ok(stem + " time_to_final", r.get("finals", {}).get("time_to_final", {}))
        need((num(r, "finals", "finals") or 0) > 0, f"{stem}: no final status observed")

r = envelope("ceiling", "ceiling")
if r is not None:
    load_ok("ceiling", r.get("load", {}))

r = envelope("sweep", "sweep")
if r is not None:
    need(isinstance(r.get("curve"), list) and len(r["curve"]) >= 1, "sweep: curve missing")
    need(isinstance(r.get("saturation"), dict) and "reason" in r["saturation"], "sweep: saturation missing")
    for s in r.get("steps", []):
        load_ok(f"sweep step {s.get('level')}", s.get("load", {}))

r = envelope("soak", "soak")
if r is not None:
    load_ok("soak", r.get("load", {}))
    need((num(r, "rate") or 0) > 0, "soak: rate missing")
    need(num(r, "probe", "throughput_rps") is not None, "soak: saturation probe missing")
    ivs = r.get("intervals", [])
    need(len(ivs) == 3 and all(i.get("full") for i in ivs), f"soak: {len(ivs)} intervals, expected 3 full ones")
    for i in ivs:
        for k in ("throughput_rps", "p50_ms", "p99_ms", "completed", "error", "dropped"):
            need(num(i, k) is not None, f"soak interval {i.get('index')}: {k} missing")
        need(isinstance(i.get("rss_mib"), dict), f"soak interval {i.get('index')}: rss_mib missing")
        need(num(i, "log_bytes") is not None, f"soak interval {i.get('index')}: log_bytes missing")
    watched = r.get("processes", [])
    if os.environ.get("BENCH_SOAK_PIDS"):
        expected = sorted(p.split("=")[0] for p in os.environ["BENCH_SOAK_PIDS"].split(","))
        need(sorted(watched) == expected, f"soak: watched {watched}, expected {expected}")
        for i in ivs:
            for p in expected:
                need((num(i, "rss_mib", p) or 0) > 0, f"soak interval {i.get('index')}: no RSS for {p}")
    v = r.get("verdict", {})
    need(v.get("status") in ("flat", "not_flat", "inconclusive"), f"soak: verdict {v.get('status')!r}")
    need(isinstance(v.get("checks"), list) and len(v["checks"]) >= 3 + len(watched), "soak: flatness checks missing")

need(os.path.exists(os.path.join(out, "report.md")), "report.md missing")
need(any(f.endswith(".svg") for f in os.listdir(out)), "no plot written")

if errors:
    for e in errors:
        print("bench-smoke: " + e, file=sys.stderr)
    sys.exit(1)
print(f"bench-smoke: all result files in {out} have the expected shape; consistency passed", file=sys.stderr)
PY

if ((status != 0)); then
    die "smoke test failed (results in $OUT)"
fi
log "ok (results in $OUT)"
