#!/bin/bash
# Entrypoint of the postgres:15 stand-in (postgres.Dockerfile): the subset of the official
# image's docker-entrypoint.sh that docker-compose.yml uses.
set -euo pipefail

if [[ "${1:-}" != postgres ]]; then
    exec "$@"
fi
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    user="${POSTGRES_USER:-postgres}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    # Like the official image: the socket (inside the container) trusts, TCP asks for $auth.
    init=(initdb --username="$user" --auth-local=trust --auth-host="$auth" --encoding=UTF8)
    case "$auth" in
    trust) "${init[@]}" >/dev/null ;;
    scram-sha-256)
        [[ -n "${POSTGRES_PASSWORD:-}" ]] || {
            echo "POSTGRES_PASSWORD is required (POSTGRES_HOST_AUTH_METHOD=scram-sha-256)" >&2
            exit 1
        }
        "${init[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") >/dev/null
        ;;
    *)
        echo "this stand-in supports POSTGRES_HOST_AUTH_METHOD=trust or scram-sha-256" >&2
        exit 1
        ;;
    esac
    echo "host all all all $auth" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    # Like the official image: the init scripts run against a server that listens on the
    # socket only, so nothing (a health check over TCP) sees it before they are done.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
        *.sql)
            echo "running $f"
            psql -v ON_ERROR_STOP=1 --username "$user" --no-password --dbname postgres -f "$f"
            ;;
        *.sh)
            echo "running $f"
            POSTGRES_USER="$user" bash "$f"
            ;;
        *) [[ -e "$f" ]] && echo "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
