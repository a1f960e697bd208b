# RedisRec — build, run, test and benchmark the `rec` Redis module.
#
#   make run    build the module and start redis-server with it (foreground, ./redis.conf)
#   make test   fmt + clippy + unit and integration tests (real redis-server processes)
#   make bench  synthetic-shop benchmark against redis-benchmark baselines (bench/run.sh)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# rustup installs cargo here; CI shells do not always have it on PATH.
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO  ?= cargo
MODULE := target/release/libredisrec.so
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build run test bench clean

all: build

# Installs only what is missing; apt-get update only when something must be installed.
deps:
	@missing=""; \
	command -v redis-server    >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v redis-benchmark >/dev/null 2>&1 || missing="$$missing redis-tools"; \
	dpkg -s libclang-dev       >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing="$$missing prometheus"; \
	command -v prometheus-redis-exporter >/dev/null 2>&1 || missing="$$missing prometheus-redis-exporter"; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
		case "$$missing" in *redis-server*) \
			$(SUDO) service redis-server stop >/dev/null 2>&1 || true ;; \
		esac; \
		case "$$missing" in *prometheus*) \
			for s in prometheus prometheus-redis-exporter prometheus-node-exporter; do \
				$(SUDO) service $$s stop >/dev/null 2>&1 || true; \
			done ;; \
		esac; \
	fi

build:
	$(CARGO) build --release

run: deps build
	redis-server ./redis.conf

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --release
	$(CARGO) test --release

bench: deps build
	bash bench/run.sh

clean:
	$(CARGO) clean
