#!/usr/bin/env bash
# Project-local PostgreSQL and nats-server for development and tests.
#
#   scripts/infra.sh up      start both (no-op for what is already running), create the databases,
#                            print DATABASE_ADMIN_URL=... and NATS_URL=... on stdout
#   scripts/infra.sh down    stop what `up` started (data kept)
#   scripts/infra.sh wipe    down, then delete the data (.local/pg, .local/nats)
#   scripts/infra.sh status  show what runs (exit 3 if a local server is not running)
#   scripts/infra.sh env     print the URLs only
#
# If DATABASE_ADMIN_URL is set, no PostgreSQL is started (the databases are created on that server
# if possible); if NATS_URL is set, no nats-server is started.
#
# Env: PG_PORT (15432), NATS_PORT (14222), NATS_MONITOR_PORT (18222), PG_BIN_DIR,
#      NATS_SERVER_BIN, VERBOSE=1; INFRA_SKIP_PG=1 / INFRA_SKIP_NATS=1 skip a server (in `down`
#      too); NATS_LOCAL_CONF (nats/local.conf) configures the single node.
#      NATS_NODES=3: a three-node JetStream cluster (nats/cluster/node.conf) instead of one
#      nats-server; node k listens on NATS_PORT+k-1 (clients), NATS_MONITOR_PORT+k-1 and
#      NATS_CLUSTER_PORT+k-1 (16222, routes); NATS_URL= lists all three.
#      CHECKOUT_STATE_DIR (.local) with other ports runs a second, independent pair
#      (testkit/tests/faults.rs does, to kill them); CHECKOUT_SECRETS_DIR ($CHECKOUT_STATE_DIR/secrets)
#      where the generated credentials are.
# Access: PostgreSQL wants a SCRAM password over TCP: `postgres` (the admin, for scripts and
# tests; password in secrets/pg-admin) and one role per service owning its database (api, order,
# stock, payment; secrets/pg-<db>); the OS user reaches it over the unix socket. nats-server
# admits the users of nats/auth.conf only (secrets/nats-<user>). Every secret is generated on
# the first `up` (mode 600); an existing data directory made by an older version is upgraded.
# Everything lives under .local/: secrets/, pg/data, pg/run (socket), nats/ (JetStream store),
# run/nats.pid, log/postgres.log, log/nats.log; a cluster node k: nats-<k>/, run/nats-<k>.pid,
# log/nats-<k>.log. `down`, `wipe` and `status` cover whichever of the two exist.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_DIR="$STATE/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"
PG_LOG="$LOG_DIR/postgres.log"
PG_OS_USER=postgres

NATS_STORE="$STATE/nats"
NATS_PID="$RUN_DIR/nats.pid"
NATS_LOG="$LOG_DIR/nats.log"
NATS_SERVER_NAME="${NATS_SERVER_NAME:-checkout-local}"
NATS_CONF="${NATS_LOCAL_CONF:-$ROOT/nats/local.conf}"
NATS_CLUSTER_CONF="$ROOT/nats/cluster/node.conf"
[[ "$NATS_NODES" == 1 || "$NATS_NODES" == 3 ]] ||
    die "NATS_NODES must be 1 or 3 (nats/cluster/node.conf names three routes), got '$NATS_NODES'"

# A unix socket path is limited to ~107 bytes; fall back to a short per-checkout directory.
if ((${#PG_SOCK} + ${#PG_PORT} + 12 > 100)); then
    sock_key="$ROOT"
    [[ "$STATE" == "$ROOT/.local" ]] || sock_key="$STATE"
    PG_SOCK="/tmp/checkout-pg-$(printf '%s' "$sock_key" | cksum | cut -d' ' -f1)"
fi

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# Run a command as the OS user owning the cluster: PostgreSQL refuses to run as root.
pg_as_owner() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        "$@"
    fi
}

ensure_pg_os_user() {
    [[ $EUID -eq 0 ]] || return 0
    if ! getent passwd "$PG_OS_USER" >/dev/null; then
        log "creating system user $PG_OS_USER"
        useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
            --shell /bin/bash "$PG_OS_USER"
    fi
}

# The postgres OS user must be able to traverse every directory down to .local/pg.
ensure_traversable() {
    [[ $EUID -eq 0 ]] || return 0
    local target="$1"
    if runuser -u "$PG_OS_USER" -- test -x "$target" 2>/dev/null; then
        return 0
    fi
    local path="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${target#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        if ! runuser -u "$PG_OS_USER" -- test -x "$path" 2>/dev/null; then
            log "chmod o+x $path (so the $PG_OS_USER user can reach $target)"
            chmod o+x "$path"
        fi
    done
}

# Choose the server binaries: the version that created the data dir, else the newest installed.
select_pg_bin() {
    ensure_postgres_installed
    if [[ -f "$PG_DATA/PG_VERSION" && -z "${PG_BIN_DIR:-}" ]]; then
        local v
        v="$(<"$PG_DATA/PG_VERSION")"
        if [[ -x "/usr/lib/postgresql/$v/bin/postgres" ]]; then
            PG_BIN="/usr/lib/postgresql/$v/bin"
        elif [[ "$("$PG_BIN/postgres" --version)" != *" $v."* ]]; then
            die "$PG_DATA was created by PostgreSQL $v, which is not installed ($PG_BIN is $("$PG_BIN/postgres" --version)); run scripts/infra.sh wipe"
        fi
    fi
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
    [[ -n "${PG_BIN:-}" ]] || PG_BIN="$(find_pg_bin_dir)"
    [[ -n "$PG_BIN" ]] || return 1
    pg_as_owner "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_pid() {
    local pid=""
    [[ -f "$PG_DATA/postmaster.pid" ]] && read -r pid <"$PG_DATA/postmaster.pid"
    printf '%s\n' "$pid"
}

# recovery_init_sync_method = syncfs needs PostgreSQL >= 14 and Linux >= 5.8 (which reports
# syncfs errors).
pg_syncfs_supported() {
    local pg kernel
    pg="$("$PG_BIN/postgres" --version 2>/dev/null)" || return 1
    [[ "$pg" =~ ([0-9]+)\. ]] && ((BASH_REMATCH[1] >= 14)) || return 1
    kernel="$(uname -r)"
    [[ "$kernel" =~ ^([0-9]+)\.([0-9]+) ]] || return 1
    ((BASH_REMATCH[1] > 5 || (BASH_REMATCH[1] == 5 && BASH_REMATCH[2] >= 8)))
}

pg_write_config() {
    local sock="${PG_SOCK//\'/\'\'}"
    local conf
    conf="$(
        cat <<EOF
# Written by scripts/infra.sh on every start; change the script, not this file.
listen_addresses = '$LOCAL_HOST'
port = $PG_PORT
unix_socket_directories = '$sock'
# Many parallel test databases and connection pools on a 2-core box.
max_connections = 500
shared_buffers = 256MB
# Durability stays on: the guarantees (DESIGN.md) assume fsynced commits.
fsync = on
synchronous_commit = on
full_page_writes = on
# Fewer forced checkpoints under benchmark load (does not weaken durability).
max_wal_size = 2GB
# Passwords are stored and checked as SCRAM verifiers (pg_hba.conf: pg_write_hba).
password_encryption = 'scram-sha-256'
EOF
    )"
    if pg_syncfs_supported; then
        # After a crash, make the data directory durable with one syncfs() instead of an
        # fsync() per file (about 10 s for a few thousand files on a busy disk): the same
        # guarantee, back sooner.
        conf+=$'\nrecovery_init_sync_method = syncfs'
    fi
    printf '%s\n' "$conf" >"$PG_DATA/checkout.conf"
    [[ $EUID -ne 0 ]] || chown "$PG_OS_USER:" "$PG_DATA/checkout.conf"
    if ! grep -q "^include_if_exists = 'checkout.conf'" "$PG_DATA/postgresql.conf"; then
        printf "\n# Project settings (scripts/infra.sh)\ninclude_if_exists = 'checkout.conf'\n" \
            >>"$PG_DATA/postgresql.conf"
    fi
    pg_write_hba || true
}

# Who may connect how. TCP: a SCRAM password, for everyone (the services' roles, and the admin
# `postgres` whose password is .local/secrets/pg-admin). The unix socket: the OS user running
# PostgreSQL without a password, as only that user (and root) can enter the socket directory
# (700): the scripts' way in to set the passwords. Returns 0 when the file changed.
pg_write_hba() {
    local hba
    hba="$(
        cat <<'EOF'
# Written by scripts/infra.sh on every start; change the script, not this file.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
EOF
    )"
    if [[ "$(cat "$PG_DATA/pg_hba.conf" 2>/dev/null)" == "$hba" ]]; then
        return 1
    fi
    printf '%s\n' "$hba" >"$PG_DATA/pg_hba.conf"
    [[ $EUID -ne 0 ]] || chown "$PG_OS_USER:" "$PG_DATA/pg_hba.conf"
    chmod 600 "$PG_DATA/pg_hba.conf"
}

pg_init() {
    log "initdb $PG_DATA"
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 \
        --no-locale >"$LOG_DIR/initdb.log" 2>&1 || {
        show_log_tail "$LOG_DIR/initdb.log"
        die "initdb failed"
    }
}

pg_up() {
    if [[ "${INFRA_SKIP_PG:-0}" == 1 ]]; then
        debug "INFRA_SKIP_PG=1: not starting a local PostgreSQL"
        return 0
    fi
    if [[ -n "${DATABASE_ADMIN_URL:-}" ]]; then
        debug "DATABASE_ADMIN_URL is set: not starting a local PostgreSQL"
        ensure_databases "$DATABASE_ADMIN_URL" external
        return 0
    fi
    select_pg_bin
    ensure_pg_os_user
    mkdir -p "$PG_DIR"
    touch "$PG_LOG"
    if [[ $EUID -eq 0 ]]; then
        if [[ "$(stat -c %U "$PG_DIR")" != "$PG_OS_USER" ]]; then
            chown -R "$PG_OS_USER:" "$PG_DIR"
        fi
        chown "$PG_OS_USER:" "$PG_LOG"
        chmod 700 "$PG_DIR"
        ensure_traversable "$PG_DIR"
    fi
    pg_as_owner mkdir -p "$PG_SOCK"
    # The socket directory is the admin's way in (pg_hba.conf: trust): the OS user's only.
    pg_as_owner chmod 700 "$PG_SOCK"

    if pg_running; then
        debug "postgres already running (pid $(pg_pid))"
        port_open "$LOCAL_HOST" "$PG_PORT" ||
            die "postgres already runs (pid $(pg_pid)) but not on port $PG_PORT (changed PG_PORT? run scripts/infra.sh down first)"
        # A server started by an older script (trust for everyone): lock it down now.
        if pg_write_hba; then
            pg_as_owner "$PG_BIN/pg_ctl" reload -D "$PG_DATA" -s >/dev/null ||
                die "cannot reload PostgreSQL's pg_hba.conf"
            log "postgres: pg_hba.conf now requires SCRAM passwords over TCP (reloaded)"
        fi
    else
        if port_open "$LOCAL_HOST" "$PG_PORT"; then
            die "port $PG_PORT is in use by another process; stop it or set PG_PORT"
        fi
        [[ -f "$PG_DATA/PG_VERSION" ]] || pg_init
        pg_write_config
        # 9>&-: the server must not inherit (and hold forever) the infra.lock descriptor.
        pg_as_owner "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 -s \
            >"$LOG_DIR/pg_ctl.log" 2>&1 9>&- || {
            cat "$LOG_DIR/pg_ctl.log" >&2
            show_log_tail "$PG_LOG"
            die "PostgreSQL did not start"
        }
        log "postgres started on $LOCAL_HOST:$PG_PORT (pid $(pg_pid))"
    fi
    wait_for_port "$LOCAL_HOST" "$PG_PORT" 30 || {
        show_log_tail "$PG_LOG"
        die "PostgreSQL runs but does not listen on $LOCAL_HOST:$PG_PORT"
    }
    # Over the socket: the admin password may not be set yet (a new or an older data directory).
    local tries=0
    until pg_as_owner "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -X -q -w \
        -tAc 'select 1' >/dev/null 2>"$LOG_DIR/psql.err"; do
        tries=$((tries + 1))
        if ((tries >= 20)); then
            cat "$LOG_DIR/psql.err" >&2
            show_log_tail "$PG_LOG"
            die "cannot connect to PostgreSQL over $PG_SOCK"
        fi
        sleep 0.5
    done
    provision_roles "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres ||
        die "cannot set up the roles and databases"
}

# The SQL that makes the installation's roles and databases what they should be, whatever they
# were: the admin `postgres` gets .local/secrets/pg-admin as password (ADMIN=1); each service a
# role of its own (LOGIN, no superuser, no CREATEDB, no CREATEROLE) with .local/secrets/pg-<db>
# as password, owning its database and everything in it (an older installation made them as
# `postgres`). Run on every `up`: changing a secrets file and running `up` rotates a password.
provision_sql() {
    local admin="$1" db role pw
    if [[ "$admin" == 1 ]]; then
        printf "ALTER ROLE postgres PASSWORD '%s';\n" "$(ensure_secret pg-admin)"
    fi
    for db in "${DATABASES[@]}"; do
        role="$db" pw="$(ensure_secret "pg-$db")"
        cat <<EOF
SELECT format('CREATE ROLE %I', '$role') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role') \\gexec
ALTER ROLE "$role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '$pw';
SELECT format('CREATE DATABASE %I OWNER %I', '$db', '$role') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \\gexec
ALTER DATABASE "$db" OWNER TO "$role";
REVOKE ALL ON DATABASE "$db" FROM PUBLIC;
\\connect "$db"
DO \$do\$
DECLARE r record;
BEGIN
    -- Tables, views and sequences made by postgres (an older installation) go to the owner;
    -- a sequence owned by a column follows its table.
    FOR r IN
        SELECT c.oid::regclass AS rel,
               CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                              WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND c.relowner <> '"$role"'::regrole
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT 1 FROM pg_depend d
              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO %I', r.kind, r.rel, '$role');
    END LOOP;
END
\$do\$;
\\connect postgres
EOF
    done
}

# provision_roles PSQL ARGS...: runs provision_sql through `PSQL ARGS...` (an admin connection;
# over the socket as the OS user owning the cluster). On someone else's server
# (DATABASE_ADMIN_URL) the admin's password is theirs: left alone.
provision_roles() {
    local admin=1 run=()
    [[ -z "${DATABASE_ADMIN_URL:-}" ]] || admin=0
    [[ " $* " == *" -h $PG_SOCK "* ]] && run=(pg_as_owner)
    provision_sql "$admin" | "${run[@]}" "$@" -X -q -w -v ON_ERROR_STOP=1 \
        >/dev/null 2>"$LOG_DIR/psql.err" || {
        cat "$LOG_DIR/psql.err" >&2
        return 1
    }
}

# ensure_databases ADMIN_URL external: the roles and databases (provision_sql) on the server of
# DATABASE_ADMIN_URL, if psql is there and the server reachable (else a warning: whoever runs
# that server makes them).
ensure_databases() {
    local url="$1" psql
    if [[ -n "${PG_BIN:-}" && -x "$PG_BIN/psql" ]]; then
        psql="$PG_BIN/psql"
    elif command -v psql >/dev/null 2>&1; then
        psql=psql
    else
        warn "no psql found: not creating the roles and databases ${DATABASES[*]} on $url"
        return 0
    fi
    local tries=0
    until PGCONNECT_TIMEOUT=5 "$psql" -X -q -w -d "$url" -tAc 'select 1' >/dev/null 2>"$LOG_DIR/psql.err"; do
        tries=$((tries + 1))
        if ((tries >= 20)); then
            cat "$LOG_DIR/psql.err" >&2
            warn "cannot reach $url to create the roles and databases ${DATABASES[*]}"
            return 0
        fi
        sleep 0.5
    done
    provision_roles "$psql" -d "$url" ||
        warn "could not create the roles and databases ${DATABASES[*]} on $url"
}

pg_down() {
    if ! pg_running; then
        debug "postgres not running"
        return 0
    fi
    local pid
    pid="$(pg_pid)"
    pg_as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s >"$LOG_DIR/pg_ctl.log" 2>&1 || {
        cat "$LOG_DIR/pg_ctl.log" >&2
        die "pg_ctl stop failed"
    }
    log "postgres stopped (pid $pid)"
}

# ---------------------------------------------------------------------------------------------
# nats-server

nats_up() {
    if [[ -n "${NATS_URL:-}" || "${INFRA_SKIP_NATS:-0}" == 1 ]]; then
        debug "NATS_URL is set: not starting a local nats-server"
        return 0
    fi
    if [[ "$NATS_NODES" == 3 ]]; then
        cluster_up
        return 0
    fi
    ensure_nats_installed
    ensure_curl_installed
    local pid health="http://$LOCAL_HOST:$NATS_MONITOR_PORT/healthz"
    if pid="$(running_pid "$NATS_PID" nats-server)"; then
        debug "nats-server already running (pid $pid)"
        # One started by an older version of this script admits anyone until restarted.
        if ! curl -fsS --max-time 2 "http://$LOCAL_HOST:$NATS_MONITOR_PORT/varz" 2>/dev/null |
            grep -q '"auth_required": *true'; then
            warn "the running nats-server (pid $pid) does not require authentication: restart it (scripts/infra.sh down, then up) to load nats/auth.conf"
        fi
    else
        local port
        for port in "$NATS_PORT" "$NATS_MONITOR_PORT"; do
            if port_open "$LOCAL_HOST" "$port"; then
                die "port $port is in use by another process; stop it or set NATS_PORT / NATS_MONITOR_PORT"
            fi
        done
        mkdir -p "$NATS_STORE"
        rm -f "$NATS_PID"
        local args=() store_args=(-sd "$NATS_STORE")
        # nats/auth.conf reads the users' passwords from the environment.
        export_nats_passwords
        # The config file may refer to these ($NATS_STORE_DIR etc.).
        export NATS_STORE_DIR="$NATS_STORE" NATS_PORT NATS_MONITOR_PORT NATS_SERVER_NAME \
            NATS_LOG_FILE="$NATS_LOG"
        if [[ -f "$NATS_CONF" ]]; then
            args+=(-c "$NATS_CONF")
            local check
            # nats-server rejects -sd when the config sets store_dir itself ("Duplicate
            # 'store_dir' configuration"): then the config's store_dir (e.g. $NATS_STORE_DIR) wins.
            if ! check="$("$NATS_SERVER_BIN" "${args[@]}" -js "${store_args[@]}" -t 2>&1 | tr -d '\\0')"; then
                if [[ "$check" == *"Duplicate 'store_dir'"* ]]; then
                    store_args=()
                    check="$("$NATS_SERVER_BIN" "${args[@]}" -js -t 2>&1 | tr -d '\\0')" || true
                fi
                if ! "$NATS_SERVER_BIN" "${args[@]}" -js "${store_args[@]}" -t >/dev/null 2>&1; then
                    printf '%s\n' "$check" >&2
                    die "nats-server rejects $NATS_CONF"
                fi
            fi
        fi
        args+=(-a "$LOCAL_HOST" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js "${store_args[@]}"
            -n "$NATS_SERVER_NAME" --pid "$NATS_PID" -l "$NATS_LOG")
        printf '\n==== %s starting %s %s\n' "$(date -Is)" "$NATS_SERVER_BIN" "${args[*]}" >>"$NATS_LOG"
        # shellcheck disable=SC2016,SC2094 # $$ is for the inner bash; the log is only appended to
        setsid -w bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$NATS_PID" \
            "$NATS_SERVER_BIN" "${args[@]}" </dev/null >>"$NATS_LOG" 2>&1 9>&- &
        local bgpid=$!
        disown 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        until curl -fsS -o /dev/null --max-time 2 "$health" 2>/dev/null; do
            if ! pid_alive "$bgpid" || ((SECONDS >= deadline)); then
                show_log_tail "$NATS_LOG"
                pid="$(read_pid "$NATS_PID")"
                if [[ -n "$pid" ]] && pid_alive "$pid"; then kill "$pid" 2>/dev/null || true; fi
                rm -f "$NATS_PID"
                die "nats-server did not become healthy ($health)"
            fi
            sleep 0.2
        done
        pid="$(read_pid "$NATS_PID")"
        if ((${#store_args[@]} == 0)); then
            local sd
            sd="$(curl -fsS --max-time 2 "http://$LOCAL_HOST:$NATS_MONITOR_PORT/varz" |
                sed -n 's/.*"store_dir": *"\([^"]*\)".*/\1/p' | head -n1)" || true
            [[ "$sd" == "$NATS_STORE"* ]] ||
                warn "$NATS_CONF sets store_dir to '$sd', not \$NATS_STORE_DIR ($NATS_STORE)"
        fi
        log "nats-server started on $LOCAL_HOST:$NATS_PORT (pid $pid, $("$NATS_SERVER_BIN" --version))"
    fi
    wait_for_http "$health" 30 || {
        show_log_tail "$NATS_LOG"
        die "nats-server (pid $pid) is not healthy at $health (changed NATS_PORT/NATS_MONITOR_PORT? run scripts/infra.sh down first)"
    }
}

nats_down() {
    local pid
    if pid="$(running_pid "$NATS_PID" nats-server)"; then
        stop_pid "$pid" nats-server 30
        log "nats-server stopped (pid $pid)"
    else
        debug "nats-server not running"
    fi
    rm -f "$NATS_PID"
    cluster_down
}

# ---------------------------------------------------------------------------------------------
# Three-node JetStream cluster (NATS_NODES=3), every node configured by nats/cluster/node.conf

node_client_port() { printf '%s\n' $((NATS_PORT + $1 - 1)); }
node_monitor_port() { printf '%s\n' $((NATS_MONITOR_PORT + $1 - 1)); }
node_route_port() { printf '%s\n' $((NATS_CLUSTER_PORT + $1 - 1)); }

cluster_up() {
    ensure_nats_installed
    ensure_curl_installed
    # nats/auth.conf (included by node.conf) reads the users' passwords from the environment.
    export_nats_passwords
    local k pid port pidfile log started=()
    for ((k = 1; k <= 3; k++)); do
        pidfile="$RUN_DIR/nats-$k.pid" log="$LOG_DIR/nats-$k.log"
        if pid="$(running_pid "$pidfile" nats-server)"; then
            debug "nats node $k already running (pid $pid)"
            continue
        fi
        for port in "$(node_client_port "$k")" "$(node_monitor_port "$k")" "$(node_route_port "$k")"; do
            if port_open "$LOCAL_HOST" "$port"; then
                die "port $port (nats node $k) is in use by another process (a single-node nats-server? run scripts/down.sh first); or set NATS_PORT / NATS_MONITOR_PORT / NATS_CLUSTER_PORT"
            fi
        done
        mkdir -p "$STATE/nats-$k"
        rm -f "$pidfile"
        printf '\n==== %s starting node %s: %s -c %s\n' "$(date -Is)" "$k" "$NATS_SERVER_BIN" \
            "$NATS_CLUSTER_CONF" >>"$log"
        # shellcheck disable=SC2016,SC2094 # $$ is for the inner bash; the log is only appended to
        NATS_SERVER_NAME="checkout-n$k" \
            NATS_LISTEN="$LOCAL_HOST:$(node_client_port "$k")" \
            NATS_HTTP="$LOCAL_HOST:$(node_monitor_port "$k")" \
            NATS_STORE_DIR="$STATE/nats-$k" \
            NATS_CLUSTER_LISTEN="$LOCAL_HOST:$(node_route_port "$k")" \
            NATS_ROUTE_1="nats-route://$LOCAL_HOST:$(node_route_port 1)" \
            NATS_ROUTE_2="nats-route://$LOCAL_HOST:$(node_route_port 2)" \
            NATS_ROUTE_3="nats-route://$LOCAL_HOST:$(node_route_port 3)" \
            setsid -w bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
            "$NATS_SERVER_BIN" -c "$NATS_CLUSTER_CONF" -l "$log" </dev/null >>"$log" 2>&1 9>&- &
        disown 2>/dev/null || true
        started+=("$k")
    done
    # Healthy = JetStream has a meta leader and this node's streams are current, which takes a
    # majority of the nodes: so start all, then wait for each.
    for ((k = 1; k <= 3; k++)); do
        wait_for_http "http://$LOCAL_HOST:$(node_monitor_port "$k")/healthz" 60 || {
            show_log_tail "$LOG_DIR/nats-$k.log"
            die "nats node $k is not healthy at http://$LOCAL_HOST:$(node_monitor_port "$k")/healthz (scripts/infra.sh down stops the cluster)"
        }
    done
    if ((${#started[@]} > 0)); then
        log "nats cluster: started node(s) ${started[*]} of 3 at $(local_nats_url) ($("$NATS_SERVER_BIN" --version))"
    fi
}

# Stops every cluster node that runs, whatever NATS_NODES says.
cluster_down() {
    local pidfile pid stopped=()
    shopt -s nullglob
    for pidfile in "$RUN_DIR"/nats-[0-9]*.pid; do
        if pid="$(running_pid "$pidfile" nats-server)"; then
            stop_pid "$pid" nats-server 30
            stopped+=("$(basename "$pidfile" .pid)")
        fi
        rm -f "$pidfile"
    done
    shopt -u nullglob
    if ((${#stopped[@]} > 0)); then
        log "stopped ${stopped[*]}"
    fi
}

cluster_status() {
    local k pid pidfile health rc=0
    for ((k = 1; k <= 3; k++)); do
        pidfile="$RUN_DIR/nats-$k.pid"
        [[ "$NATS_NODES" == 3 || -f "$pidfile" ]] || continue
        if pid="$(running_pid "$pidfile" nats-server)"; then
            health=unhealthy
            curl -fsS -o /dev/null --max-time 2 "http://$LOCAL_HOST:$(node_monitor_port "$k")/healthz" \
                2>/dev/null && health=healthy
            printf 'nats node %s: running   pid %s  nats://%s:%s  %s  monitor http://%s:%s  store %s\n' \
                "$k" "$pid" "$LOCAL_HOST" "$(node_client_port "$k")" "$health" "$LOCAL_HOST" \
                "$(node_monitor_port "$k")" "$STATE/nats-$k"
        else
            printf 'nats node %s: stopped   (store %s)\n' "$k" "$STATE/nats-$k"
            rc=3
        fi
    done
    return "$rc"
}

# ---------------------------------------------------------------------------------------------

print_urls() {
    printf 'DATABASE_ADMIN_URL=%s\n' "$(admin_url)"
    printf 'NATS_URL=%s\n' "$(nats_url)"
    # The NATS users' passwords (nats-<user>) and the services' database passwords (pg-<db>).
    printf 'CHECKOUT_SECRETS_DIR=%s\n' "$SECRETS_DIR"
}

status() {
    local rc=0 pid
    if [[ -n "${DATABASE_ADMIN_URL:-}" ]]; then
        printf 'postgres:    external  %s\n' "$DATABASE_ADMIN_URL"
    elif pg_running; then
        printf 'postgres:    running   pid %s  %s  data %s\n' "$(pg_pid)" "$(local_admin_url)" "$PG_DATA"
    else
        printf 'postgres:    stopped   (data %s)\n' "$([[ -d $PG_DATA ]] && echo "$PG_DATA" || echo none)"
        rc=3
    fi
    if [[ -n "${NATS_URL:-}" ]]; then
        printf 'nats-server: external  %s\n' "$NATS_URL"
        return "$rc"
    fi
    if [[ "$NATS_NODES" == 3 ]] || compgen -G "$RUN_DIR/nats-[0-9]*.pid" >/dev/null; then
        cluster_status || rc=3
    fi
    if pid="$(running_pid "$NATS_PID" nats-server)"; then
        local health=unhealthy
        curl -fsS -o /dev/null --max-time 2 "http://$LOCAL_HOST:$NATS_MONITOR_PORT/healthz" 2>/dev/null && health=healthy
        printf 'nats-server: running   pid %s  nats://%s:%s  %s  monitor http://%s:%s  store %s\n' \
            "$pid" "$LOCAL_HOST" "$NATS_PORT" "$health" "$LOCAL_HOST" "$NATS_MONITOR_PORT" "$NATS_STORE"
    elif [[ "$NATS_NODES" == 1 ]]; then
        printf 'nats-server: stopped\n'
        rc=3
    fi
    return "$rc"
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd="${1:-}"
    [[ $# -le 1 ]] || usage
    ensure_state_dirs
    case "$cmd" in
    up | down | wipe)
        # One infra.sh at a time (parallel `make test` / `make up`).
        exec 9>"$RUN_DIR/infra.lock"
        flock -w 300 9 || die "another scripts/infra.sh holds $RUN_DIR/infra.lock (waited 300s)"
        ;;
    esac
    case "$cmd" in
    up)
        pg_up
        nats_up
        print_urls
        ;;
    down)
        [[ "${INFRA_SKIP_NATS:-0}" == 1 ]] || nats_down
        [[ "${INFRA_SKIP_PG:-0}" == 1 ]] || pg_down
        ;;
    wipe)
        nats_down
        pg_down
        rm -rf "$PG_DIR" "$NATS_STORE" "$STATE"/nats-[0-9]*
        [[ "$PG_SOCK" == "$PG_DIR"/* ]] || rm -rf "$PG_SOCK"
        log "wiped $PG_DIR, $NATS_STORE and the cluster stores"
        ;;
    status) status ;;
    env) print_urls ;;
    *) usage ;;
    esac
}

main "$@"
