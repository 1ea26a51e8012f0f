.PHONY: help dev test test-rust test-py lint bench reference

help:  ## list the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

dev:  ## editable install into the active virtualenv (release build)
	maturin develop --release

test: test-rust test-py  ## all tests

test-rust:  ## the Rust core's tests
	cargo test --no-default-features

test-py:  ## the Python tests
	python -m pytest

lint:  ## formatting and lints (as .ci/run runs them; mypy runs in the tests)
	cargo fmt --all -- --check
	cargo clippy --all-targets --no-default-features -- -D warnings
	cargo clippy --all-targets --all-features -- -D warnings
	ruff format --check python tests benches scripts examples
	ruff check python tests benches scripts examples
	python -m mypy python/mixedmodels

bench:  ## benchmarks against lme4 and glmm (needs R with lme4, and glmm from PyPI)
	python benches/bench_fit.py

reference:  ## regenerate lme4 reference values (needs R, lme4, lmerTest, pbkrtest, mlmRev)
	Rscript scripts/make_reference.R reference-out
	python scripts/import_reference.py reference-out
