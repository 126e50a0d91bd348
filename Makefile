# stashly — `make test` and `make demo` set everything up themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-check tour test test-acl doctest docs docs-serve lint unasync chaos bench bench-quick bench-flush check-redis check-chromium clean

BENCH_STAMP := $(VENV)/.bench-installed
DOCS_STAMP  := $(VENV)/.docs-installed

# The example FastAPI service on 127.0.0.1:8000: seeds two users and prints the curl walk-through.
demo: $(STAMP)
	$(BIN)/python -m examples.auth_app

# The same walk-through run by itself on a free port; exits 0 when every step behaved.
demo-check: $(STAMP)
	$(BIN)/python -m examples.auth_app --check

# A one-minute tour of the API (miss, hit, invalidation, flush), memory backend unless STASHLY_URL is set.
tour: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP) check-redis check-chromium
	$(BIN)/pytest

# The Redis suites again, every Redis call made as the least-privilege ACL user of the README's Security section
# (tests/conftest.py: STASHLY_TEST_ACL); fails on any ACL LOG refusal. A CI step of its own, after `make test`.
ACL_SUITES := tests/test_backends.py tests/test_contract.py tests/test_manager.py tests/test_decorator.py \
	tests/test_reliability.py tests/test_fastapi.py
test-acl: $(STAMP) check-redis
	STASHLY_TEST_ACL=1 $(BIN)/pytest -x $(ACL_SUITES)

# The docstring examples of the package (`>>>` lines; `# doctest: +SKIP` marks those needing a server). The
# documentation's ```python blocks run in `make test` (tests/test_docs_examples.py).
doctest: $(STAMP)
	$(BIN)/pytest -q --doctest-modules src/stashly

# The documentation site (mkdocs.yml, docs/): built into site/ with warnings as errors. A CI step after `make test`.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The same site served on 127.0.0.1:8001, rebuilt on every change.
docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a 127.0.0.1:8001

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[docs]'
	touch $(DOCS_STAMP)

# The typing test (tests/typing: what a user's checker sees), by mypy and by pyright (pyproject.toml [tool.pyright]),
# and pyright --verifytypes: every type of the public API known (scripts/verifytypes.py fails below 100%).
# pyright's wheel carries its JavaScript: it runs on the system node, and IGNORE_WARNINGS skips its version check online.
PYRIGHT := PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright
lint: $(STAMP)
	$(BIN)/python scripts/unasync.py --check
	$(BIN)/ruff check src tests examples chaos bench scripts
	$(BIN)/ruff format --check src tests examples chaos bench scripts
	$(BIN)/mypy --strict src tests/typing
	$(PYRIGHT) --pythonpath $(BIN)/python
	$(BIN)/python scripts/verifytypes.py

# Rewrite the sync modules generated from their async sources (scripts/unasync.py: FILES); `make lint` checks them.
unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py

# A long fault run (about 25 s): Redis paused, killed and restarted under sync and async load.
chaos: $(STAMP) check-redis
	$(BIN)/python -m chaos.run

# stashly against hand-written redis-py code and the peers, on a private redis-server (about 10 minutes).
bench: $(BENCH_STAMP) check-redis
	$(BIN)/python bench/run.py --json .bench/results.json --markdown .bench/summary.md
	$(BIN)/python bench/local_staleness.py --seconds 10 --json .bench/local_staleness.json
	$(BIN)/python bench/memory_flush.py
	$(BIN)/python bench/guarded_store.py

# The same scenarios in fewer, shorter rounds (under a minute): a quick look, not figures for the README.
bench-quick: $(BENCH_STAMP) check-redis
	$(BIN)/python bench/run.py --quick --json .bench/quick.json

# Invalidating a namespace of 1,000,000 keys: flush_namespace mode="scan" vs "versioned", on a private redis-server
# (about a minute): time to invalidation, time until the memory is back, and what other reads felt meanwhile.
bench-flush: $(STAMP) check-redis
	$(BIN)/python bench/flush_namespace.py --json .bench/flush.json

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[bench]'
	touch $(BENCH_STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "stashly needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11" >&2; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
		{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv; \
		else echo "Python's venv module is missing: install the Debian package python3-venv (sudo apt-get install -y python3-venv)" >&2; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The tests start their own redis-server processes on free loopback ports; they need the binary only.
check-redis:
	@command -v redis-server >/dev/null 2>&1 || \
		{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "redis-server not found: installing the Debian package redis-server"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
		else echo "redis-server not found: install the Debian package redis-server (sudo apt-get install -y redis-server)" >&2; exit 1; fi; }
	@redis-server --version

# The stats page test drives a real headless Chromium through chromedriver: a missing browser fails it, never skips.
check-chromium:
	@{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || \
		{ if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "chromium or chromedriver not found: installing the Debian packages chromium chromium-driver"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
		else echo "chromium or chromedriver not found: install the Debian packages chromium and chromium-driver (sudo apt-get install -y chromium chromium-driver)" >&2; exit 1; fi; }

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis .bench src/*.egg-info
