# zg-serving: every command a developer or CI needs.
# `make test` is what CI runs (.ci/run); it installs what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := test
CARGO ?= cargo

.PHONY: test deps lint fmt contracts check-contracts gas model venv bench-engine

## ---- setup ---------------------------------------------------------------
# System packages the native builds need (llama.cpp: cmake, libclang).
deps:
	@scripts/install-deps.sh

## ---- checks --------------------------------------------------------------
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

test: deps check-contracts model venv lint
	$(CARGO) test --workspace

## ---- contracts (issue 9) -------------------------------------------------

## ---- engine (issue 8) ----------------------------------------------------
