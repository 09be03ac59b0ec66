#!/usr/bin/env bash
# What runs: the binaries started by scripts/up.sh (with their /ready answer) and the local servers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

shopt -s nullglob
for bin in "${BINS[@]}"; do
    found=0
    for pidfile in "$RUN_DIR/$bin.pid" "$RUN_DIR/$bin"-[0-9]*.pid; do
        [[ -f "$pidfile" ]] || continue
        found=1
        name="$(basename "$pidfile" .pid)"
        if pid="$(running_pid "$pidfile" "$bin")"; then
            addr="$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^LISTEN_ADDR=//p' || true)"
            ready=unknown
            if [[ -n "$addr" ]]; then
                addr="${addr/#0.0.0.0:/127.0.0.1:}"
                ready="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$addr/ready" || true)"
            fi
            printf '%-16s running   pid %-7s %-16s /ready %s\n' "$name:" "$pid" "$addr" "$ready"
        else
            printf '%-16s stopped   (stale %s)\n' "$name:" "$pidfile"
        fi
    done
    ((found)) || printf '%-16s stopped\n' "$bin:"
done
"$ROOT/scripts/infra.sh" status
