#!/usr/bin/env bash
# The credentials docker-compose.yml requires (database, NATS, webhook signing, Grafana's admin), as `export NAME=value` lines on stdout:
#   eval "$(scripts/compose-secrets.sh)" && docker compose up --build
# Each is generated once per installation into .local/secrets/ (mode 600; scripts/lib.sh
# ensure_secret) and then kept: the same files `make up` uses. Rotate one by deleting (or
# editing) its file before a fresh `docker compose up` (PostgreSQL's roles are made only on an
# empty volume: on an existing one, ALTER ROLE ... PASSWORD by hand).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for name in admin "${DATABASES[@]}"; do
    printf 'export PG_%s_PASSWORD=%s\n' "${name^^}" "$(ensure_secret "pg-$name")"
done
for user in "${NATS_USERS[@]}"; do
    printf 'export NATS_%s_PASSWORD=%s\n' "${user^^}" "$(ensure_secret "nats-$user")"
done
printf 'export WEBHOOK_SECRET=%s\n' "$(webhook_secret)"
printf 'export GRAFANA_ADMIN_PASSWORD=%s\n' "$(ensure_secret grafana-admin)"
