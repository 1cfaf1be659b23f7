# The two commands of the README. Both set up from nothing (idempotent, cached) first.
.PHONY: setup models demo test lint down bench

setup:
	bash deploy/setup.sh

models: setup
	HF_HUB_OFFLINE=1 .venv/bin/inferstream build-models

# Set up, start Kafka + Triton + a worker, send the sample conversations and print the results.
demo: models
	.venv/bin/inferstream up
	.venv/bin/inferstream demo
	@echo "The service is still running: stop it with  .venv/bin/inferstream down"

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Set up, lint, type-check, then every test (unit + integration on a real broker and Triton).
test: models lint
	HF_HUB_OFFLINE=1 .venv/bin/pytest

down:
	.venv/bin/inferstream down

# Issue 7: end to end vs the model's ceiling and a naive peer (bench/out/; QUICK=1: about 5 min)
bench: models
	HF_HUB_OFFLINE=1 .venv/bin/python -m bench.run $(if $(QUICK),--quick) $(BENCH_ARGS)
