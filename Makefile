# The two commands a newcomer needs: `make demo` (the main job) and `make test` (everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)

.PHONY: all venv devcluster image lint typecheck test unit demo bench fuzz soak lock docs clean audit

all: test

# The virtualenv is (re)installed from the hash-pinned lock whenever the lock or pyproject changes.
$(STAMP): requirements-dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# Builds kube-apiserver, kube-scheduler, etcd, kubectl, registries, ORAS and NFD's tools from Go
# modules into the cache (IMAGE_COMPAT_CACHE, default ~/.cache/image-compat-extender); a no-op
# when binaries for the pinned versions are already there.
devcluster: venv
	$(PY) -m devcluster build

# The container image from the Dockerfile: with Docker where an engine runs, else with buildah
# (installed from Debian) on a base built from Debian packages when Docker Hub is out of reach.
# Cached by build context; prints the engine, build time, size and the time until serve is ready.
image: venv
	$(PY) -m devcluster.image $(IMAGE_ARGS)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: venv
	$(PY) -m mypy

# Unit tests only: no Go build, no control plane.
unit: venv
	$(PY) -m pytest -m "not integration and not e2e" -q

test: venv devcluster lint typecheck
	$(PY) -m pytest -q

# The real thing, locally: control plane, registry, specs attached with oras, our extender and
# a kube-scheduler running scheduler-config/, pods placed; prints a table, writes
# build/demo/placements.png. `make demo DEMO_ARGS=--keep` keeps it up (Ctrl-C stops it);
# `make demo IMAGE=1` runs the extender from the container image (`make image`) instead.
# It builds the Go binaries it needs itself (not the `devcluster` target, which also installs
# the Debian packages only some tests need, and would want root on a fresh machine).
demo: venv
	$(PY) -m devcluster.demo $(if $(IMAGE),--image) $(DEMO_ARGS)

# Benchmarks run on their own (never part of `make test`); each prints a table and writes JSON
# and a PNG plot under benchmarks/results/; docs/performance.md is then generated from them.
bench: venv devcluster
	$(PY) benchmarks/rules_bench.py
	$(PY) benchmarks/server_bench.py
	$(PY) benchmarks/artifacts_bench.py
	$(PY) benchmarks/features_bench.py
	$(PY) benchmarks/e2e_bench.py
	$(PY) benchmarks/nfd_eval_bench.py
	$(PY) benchmarks/performance_page.py

# The long fuzz run, never part of `make test` (which runs each target briefly): the hypothesis
# targets of tests/fuzz at their long budgets (FUZZ_SCALE=2 doubles them), then the atheris
# harnesses (ATHERIS_RUNS, ATHERIS_SECONDS each); prints inputs, time and crashes per target
# and writes build/fuzz/summary.json. See docs/reliability.md, "Fuzzing".
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(PY) -m tests.fuzz

# Ten minutes of 50 pods/s (filter then prioritize) over 1,000 nodes against a real serve
# watching a real kube-apiserver, NodeFeatures changing throughout; every answer checked and the
# extender's RSS sampled every 10 s. Fails on any error, a missed rate or RSS growth; writes
# benchmarks/results/soak.json and soak.png. `make soak SOAK_ARGS="--duration 60"` for less.
soak: venv
	$(PY) benchmarks/soak.py $(SOAK_ARGS)

lock:
	@echo "pip-compile (pip-tools) regenerates the locks; see README 'Dependencies'."
	pip-compile -q --strip-extras --generate-hashes --allow-unsafe -o requirements.lock pyproject.toml
	pip-compile -q --strip-extras --generate-hashes --allow-unsafe --extra dev --extra demo --extra fuzz -o requirements-dev.lock pyproject.toml

# Known vulnerabilities in the locked runtime dependencies. Not part of `make test`: pip-audit
# reads advisories from PyPI's JSON API (pypi.org/pypi/NAME/VERSION/json) or OSV (api.osv.dev),
# services beyond the package index; where they do not answer, every package would be skipped,
# which --strict makes an error rather than a pass.
AUDIT_VENV := .venv-audit
audit:
	@test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install -q pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit -r requirements.lock --require-hashes --disable-pip --strict

clean:
	rm -rf $(VENV) $(AUDIT_VENV) .mypy_cache .ruff_cache .pytest_cache

# docs/configuration.md and docs/metrics.md are generated from the option and metric tables;
# tests/server/test_docs.py fails when they are stale.
docs: venv
	$(PY) -c "from extender.server import config; print(config.configuration_page(), end='')" > docs/configuration.md
	$(PY) -c "from extender.server import metrics; print(metrics.metrics_page(), end='')" > docs/metrics.md
