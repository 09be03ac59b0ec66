# syntax=docker/dockerfile:1
# One image with the four binaries: api, order-svc, stock-svc, payment-svc.
#   docker build -t checkout .                  # ENTRYPOINT runs $BIN (default api)
#   docker build --build-arg BIN=stock-svc -t checkout-stock .
#   docker build --build-arg GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t checkout .
# docker-compose.yml builds it once and picks the binary per service with `entrypoint:`.
# Migrations (sql/) and stream definitions (nats/jetstream.json) are compiled into the binaries.

ARG RUST_IMAGE=rust:1-bookworm

# --- cargo-chef: cache the dependency build in its own layer
FROM ${RUST_IMAGE} AS chef
RUN cargo install cargo-chef --locked
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --workspace --recipe-path recipe.json
COPY . .
# The build context has no .git: the binaries' main.rs read GIT_COMMIT (option_env!) for build_info
# ("unknown" when empty). Declared after `cook` so a new commit keeps the dependency layer.
ARG GIT_COMMIT=""
RUN GIT_COMMIT="${GIT_COMMIT}" \
    cargo build --release --locked --bins -p api -p order-svc -p stock-svc -p payment-svc \
    && mkdir -p /out \
    && cp target/release/api target/release/order-svc target/release/stock-svc \
          target/release/payment-svc /out/

# --- runtime
FROM debian:bookworm-slim AS runtime
# curl: for the container healthchecks (GET /ready)
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /out/ /usr/local/bin/
ARG BIN=api
ENV BIN=${BIN} \
    RUST_LOG=info \
    LISTEN_ADDR=0.0.0.0:8000
RUN test -x "/usr/local/bin/${BIN}" && ln -s "/usr/local/bin/${BIN}" /usr/local/bin/service
USER app
WORKDIR /home/app
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/service"]
