# Stand-in for prom/prometheus:v<PROMETHEUS_VERSION> (scripts/compose-test.sh): Debian's
# prometheus package (its version is the pin; checked below) laid out like the official image:
# entrypoint prometheus, user nobody, data in /prometheus; wget for the health check.
FROM debian:bookworm-slim
ARG PROMETHEUS_VERSION
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
    && if ! prometheus --version 2>&1 | grep -q "^prometheus, version ${PROMETHEUS_VERSION}[ +]"; then \
           echo "Debian's prometheus is not the pinned ${PROMETHEUS_VERSION}:"; prometheus --version; exit 1; \
       fi \
    && mkdir -p /prometheus /etc/prometheus \
    && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
