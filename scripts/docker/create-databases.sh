#!/bin/bash
# Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d), as the admin
# over the socket: one role per service (LOGIN, no superuser, no CREATEDB, no CREATEROLE, a SCRAM
# password from PG_<SERVICE>_PASSWORD) owning its own database; the services apply their own
# migrations at start-up, as that owner.
set -euo pipefail
for db in api order stock payment; do
    var="PG_${db^^}_PASSWORD"
    [[ -n "${!var:-}" ]] || {
        echo "$var is required" >&2
        exit 1
    }
    # \getenv: the password never appears on a command line.
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --no-password --dbname postgres \
        -v role="$db" -v var="$var" <<'SQL'
\getenv pw :var
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'pw';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
