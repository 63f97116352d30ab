# The single entry point: setup, demo, test, test-all, lint, bench.
# Works on a fresh Debian machine: it makes .venv, installs the project with its extras,
# and installs Debian's redis-server (Redis >= 7.0) when none is on PATH.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.memstream-installed
PKGS   := producers workers projections tiering integrations
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test test-all lint bench redis-server node-deps typecheck-tree clean

setup: $(STAMP) redis-server node-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned to 2.13.0 in the extras: a local CPU wheel satisfies it.
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "redis-server not found: installing Debian's redis-server"; \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  fi; \
	fi; \
	if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "Could not install redis-server. Install Redis >= 7.0 (Debian/Ubuntu: 'apt-get install redis-server'," \
	       "macOS: 'brew install redis') and make sure redis-server is on PATH." >&2; exit 1; \
	fi

# The wire-protocol tests run the Node.js example for real with the npm `redis` package.
node-deps:
	@if ! command -v node >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; fi
	@if [ ! -d tests/node/node_modules/redis ]; then cd tests/node && npm ci --silent --no-audit --no-fund; fi

# mypy sees the four folders under their installed names through a tree of links.
typecheck-tree:
	@mkdir -p .typecheck/memstream
	@for d in $(PKGS); do ln -sfn ../../$$d .typecheck/memstream/$$d; done

lint: $(STAMP) typecheck-tree
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(addprefix -p memstream.,$(PKGS))
	$(BIN)/mypy tests bench

# Two processes, one per core, each taking whole files (--dist loadfile: a file's tests share
# its servers and fixtures): 4 min 42 s instead of 7 min 27 s on 2 idle cores. The soak
# and chaos tests of test-all run one at a time, as their timings assume.
test: setup lint
	$(BIN)/pytest -m "not slow" -n 2 --dist loadfile

test-all: setup lint
	$(BIN)/pytest

demo: setup
	$(BIN)/memstream demo

bench: setup
	$(BIN)/python bench/append.py

clean:
	rm -rf $(VENV) .typecheck .memstream build dist *.egg-info
