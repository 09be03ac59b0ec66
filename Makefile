# Everything runs through scripts/ (bash); state lives in .local/ (git-ignored).
#   make up      build (release) and run the whole system: PostgreSQL, nats-server, api,
#                order-svc, stock-svc, payment-svc  ->  http://127.0.0.1:8000
#   make down    stop it (data kept)          make wipe   stop it and delete the data
#   make test    fmt + clippy + tests (+ compose check); `make test ARGS="-E 'test(foo)'"`
#   make infra   only PostgreSQL + nats-server (prints DATABASE_ADMIN_URL / NATS_URL)
#   make status  what runs                    make logs   tail every log in .local/log
#   make compose-test   docker-compose.yml run for real (own dockerd, stand-in images, 2 replicas)
#   make model   the checkout protocol model at a larger bound (`make model ARGS="crashes=2"`; see model/README.md)
SHELL := /bin/bash
.DEFAULT_GOAL := help
ARGS ?=

.PHONY: help up down wipe test infra infra-down status logs bench compose-test model

help:
	@sed -n '2,10s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

up:
	@scripts/up.sh

down:
	@scripts/down.sh

wipe:
	@scripts/wipe.sh

test:
	@scripts/test.sh $(ARGS)

compose-test:
	@scripts/compose-test.sh

model:
	cargo run -p model -- $(ARGS)

infra:
	@scripts/infra.sh up

infra-down:
	@scripts/infra.sh down

status:
	@scripts/status.sh

logs:
	@shopt -s nullglob; logs=(.local/log/*.log); \
	if (( $${#logs[@]} )); then tail -n 50 "$${logs[@]}"; else echo "no logs in .local/log yet"; fi

bench:
	@if [[ -x scripts/bench.sh ]]; then scripts/bench.sh $(ARGS); \
	else echo "scripts/bench.sh does not exist yet" >&2; exit 1; fi
