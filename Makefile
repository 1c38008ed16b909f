# Everything bootstraps .venv from python3 alone; the lock files pin and hash every package.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck lock clean bench soak

# The incident in about a minute: 15 s healthy, 25 s of the story's fault, 15 s recovery; report in .scenario/
demo: $(STAMP)
	$(BIN)/netgap scenario --baseline 15s --fault 25s --recovery 15s

# Every performance figure with its target, measured side by side (about 5 min; see bench/)
bench: $(STAMP)
	$(BIN)/python -m bench --out .bench/results.json

# 10 min at 100 req/s on the traced tiers and a collector: errors, RSS growth, open fds (bench/soak.py)
soak: $(STAMP)
	$(BIN)/python -m bench.soak --duration 10m --rate 100 --out .bench/soak.json

# Two pytest-xdist workers: most tests wait on sockets and timers, so two at once take about 60%
# of the time (tests/conftest.py says what shares a worker). WORKERS=0 runs them in one process.
# Then the few whose checks a busy neighbour would move (`alone`), by themselves.
WORKERS ?= 2

test: $(STAMP) lint typecheck
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup -m "not alone"
	$(BIN)/pytest -m alone

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# Re-pin after editing pyproject.toml (needs PyPI); commit both lock files.
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile -q --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml
	$(BIN)/pip-compile -q --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --extra dev -c requirements.lock -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) .demo .scenario .pytest_cache .mypy_cache .ruff_cache
