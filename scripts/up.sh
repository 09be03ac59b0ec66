#!/usr/bin/env bash
# Build and run the whole system locally: PostgreSQL + nats-server (scripts/infra.sh) and the four
# binaries in the background, then wait until every one answers GET /ready.
#
# Env:
#   REPLICAS=n            copies of each binary (default 1); copy k listens on base port + 10*(k-1)
#   API_DATABASE_URL, ORDER_DATABASE_URL, STOCK_DATABASE_URL, PAYMENT_DATABASE_URL
#                         per-service database (default: <admin server>/api|order|stock|payment)
#   API_LISTEN_ADDR, ORDER_LISTEN_ADDR, STOCK_LISTEN_ADDR, PAYMENT_LISTEN_ADDR
#                         base listen address (default 127.0.0.1:8000|8001|8002|8003)
#   DATABASE_ADMIN_URL, NATS_URL   use these servers instead of starting local ones
#   NATS_NODES=3          a local three-node JetStream cluster (scripts/infra.sh): every binary
#                         gets all three URLs and NATS_STREAM_REPLICAS=3 (R3 streams)
#   WEBHOOK_SECRET        the api's webhook signing secret (default: this installation's, made once
#                         in .local/secrets/webhook_secret, mode 600)
#   RUST_LOG (default: each binary's own), SKIP_BUILD=1 (use the binaries already in target/release; UP_BIN_DIR
#                         takes them from elsewhere),
#   READY_TIMEOUT (60 seconds)
# Logs: .local/log/<bin>[-k].log, PIDs: .local/run/<bin>[-k].pid. Stop with scripts/down.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPLICAS="${REPLICAS:-1}"
[[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "REPLICAS must be a positive integer (got '$REPLICAS')"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
BIN_DIR="${UP_BIN_DIR:-$ROOT/target/release}"
# RUST_LOG unset: each binary uses its own default level (info, NATS and PostgreSQL clients at warn).

cd "$ROOT"
ensure_state_dirs

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (https://rustup.rs) first"
    log "cargo build --release --workspace --bins"
    # build_info's commit label; only the binaries' main.rs read it, so a new commit relinks them
    # and rebuilds nothing else.
    GIT_COMMIT="$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || true)" \
        cargo build --release --workspace --bins || die "cargo build failed"
fi

for bin in "${BINS[@]}"; do
    [[ -x "$BIN_DIR/$bin" ]] || die "binary $BIN_DIR/$bin not found (did the build produce it?)"
done

# Local servers only where the user gave no URL. PostgreSQL is not needed when every service has
# its own database URL.
skip_pg=0
if [[ -z "${DATABASE_ADMIN_URL:-}" && -n "${API_DATABASE_URL:-}" && -n "${ORDER_DATABASE_URL:-}" &&
    -n "${STOCK_DATABASE_URL:-}" && -n "${PAYMENT_DATABASE_URL:-}" ]]; then
    skip_pg=1
fi
INFRA_SKIP_PG="$skip_pg" "$ROOT/scripts/infra.sh" up >/dev/null

ensure_curl_installed
ADMIN_URL="$(admin_url)"
NATS="$(nats_url)"
if [[ "$NATS_NODES" == 3 && -z "${NATS_URL:-}" ]]; then
    export NATS_STREAM_REPLICAS="${NATS_STREAM_REPLICAS:-3}"
fi

# Only the api gets it (in its environment, not on its command line).
API_WEBHOOK_SECRET="${WEBHOOK_SECRET:-$(webhook_secret)}"

names=()
declare -A ADDR=()
for bin in "${BINS[@]}"; do
    prefix="${BIN_ENV_PREFIX[$bin]}"
    db_var="${prefix}_DATABASE_URL"
    listen_var="${prefix}_LISTEN_ADDR"
    database_url="${!db_var:-$(db_url "$ADMIN_URL" "${BIN_DB[$bin]}")}"
    base="${!listen_var:-$LOCAL_HOST:${BIN_PORT[$bin]}}"
    host="${base%:*}" base_port="${base##*:}"
    [[ "$base_port" =~ ^[0-9]+$ ]] || die "$listen_var must be host:port (got '$base')"

    for ((k = 1; k <= REPLICAS; k++)); do
        name="$bin"
        ((k == 1)) || name="$bin-$k"
        port=$((base_port + 10 * (k - 1)))
        addr="$host:$port"
        pidfile="$RUN_DIR/$name.pid"
        logfile="$LOG_DIR/$name.log"
        names+=("$name")
        probe_host="$host"
        [[ "$probe_host" == 0.0.0.0 || "$probe_host" == "[::]" ]] && probe_host="$LOCAL_HOST"
        ADDR[$name]="$probe_host:$port"

        if pid="$(running_pid "$pidfile" "$bin")"; then
            debug "$name already running (pid $pid)"
            continue
        fi
        if port_open "$probe_host" "$port"; then
            die "port $port (for $name) is in use by another process; stop it or set $listen_var"
        fi
        printf '\n==== %s starting %s (LISTEN_ADDR=%s)\n' "$(date -Is)" "$name" "$addr" >>"$logfile"
        # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
        # NO_COLOR: plain log files (tracing-subscriber honours it).
        secret=()
        [[ "$bin" == api ]] && secret=(WEBHOOK_SECRET="$API_WEBHOOK_SECRET")
        DATABASE_URL="$database_url" LISTEN_ADDR="$addr" NATS_URL="$NATS" NO_COLOR="${NO_COLOR-1}" \
            env "${secret[@]}" setsid -w bash -c 'echo $$ >"$1"; shift; exec nohup "$@"' _ "$pidfile" "$BIN_DIR/$bin" \
            </dev/null >>"$logfile" 2>&1 &
        disown 2>/dev/null || true
        debug "started $name on $addr"
    done
done

# Wait until every instance answers GET /ready with 200.
deadline=$((SECONDS + READY_TIMEOUT))
pending=("${names[@]}")
while ((${#pending[@]} > 0)); do
    still=()
    for name in "${pending[@]}"; do
        pid="$(read_pid "$RUN_DIR/$name.pid")"
        if [[ -z "$pid" ]]; then
            sleep 0.2 # the launcher has not written its PID file yet
            pid="$(read_pid "$RUN_DIR/$name.pid")"
        fi
        # (pid_alive, not pid_matches: right after the launch it may still be the wrapper bash)
        if [[ -z "$pid" ]] || ! pid_alive "$pid"; then
            show_log_tail "$LOG_DIR/$name.log"
            die "$name exited during start-up (log: $LOG_DIR/$name.log; scripts/down.sh stops the rest)"
        fi
        if curl -fsS -o /dev/null --max-time 2 "http://${ADDR[$name]}/ready" 2>/dev/null; then
            debug "$name ready"
        else
            still+=("$name")
        fi
    done
    pending=("${still[@]}")
    ((${#pending[@]} > 0)) || break
    if ((SECONDS >= deadline)); then
        for name in "${pending[@]}"; do
            printf '%s: GET http://%s/ready does not answer 200:\n' "$name" "${ADDR[$name]}" >&2
            curl -sS --max-time 2 "http://${ADDR[$name]}/ready" >&2 2>&1 || true
            echo >&2
            show_log_tail "$LOG_DIR/$name.log"
        done
        die "not ready after ${READY_TIMEOUT}s: ${pending[*]} (the others keep running; scripts/down.sh stops all)"
    fi
    sleep 0.5
done

echo "API ready at http://${ADDR[api]}"
