#!/usr/bin/env bash
# Stop what scripts/up.sh started: the binaries (by PID file: SIGTERM, up to 10 s, then SIGKILL),
# then the local PostgreSQL and nats-server (scripts/infra.sh down). Data is kept.
#   scripts/down.sh --keep-infra   (or KEEP_INFRA=1) stops only the binaries.
# STOP_TIMEOUT overrides the 10 s.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT="${STOP_TIMEOUT:-10}"
KEEP_INFRA="${KEEP_INFRA:-0}"
for arg in "$@"; do
    case "$arg" in
    --keep-infra) KEEP_INFRA=1 ;;
    *) die "unknown argument '$arg' (usage: scripts/down.sh [--keep-infra])" ;;
    esac
done
ensure_state_dirs

# Collect every instance (api.pid, api-2.pid, ...) that is still running.
declare -A victims=()
shopt -s nullglob
for bin in "${BINS[@]}"; do
    for pidfile in "$RUN_DIR/$bin.pid" "$RUN_DIR/$bin"-[0-9]*.pid; do
        [[ -f "$pidfile" ]] || continue
        if pid="$(running_pid "$pidfile" "$bin")"; then
            victims[$pid]="$(basename "$pidfile" .pid)"
            kill -TERM "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
done

# Wait for all of them together, then SIGKILL the stragglers.
deadline=$((SECONDS + STOP_TIMEOUT))
for pid in "${!victims[@]}"; do
    left=$((deadline - SECONDS))
    ((left > 0)) || left=0
    if ! wait_for_exit "$pid" "$left"; then
        warn "${victims[$pid]} (pid $pid) did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for_exit "$pid" 5 || warn "${victims[$pid]} (pid $pid) survived SIGKILL"
    fi
done
if ((${#victims[@]} > 0)); then
    log "stopped ${victims[*]}"
fi

if [[ "$KEEP_INFRA" != 1 ]]; then
    "$ROOT/scripts/infra.sh" down
fi
