# Everything a fresh machine needs, then the job. `make demo` and `make test` are the
# two commands of the README; .ci/run calls `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_MODULES := devnet/node_modules/.installed

.PHONY: demo test setup system-deps compile bench clean

demo: setup
	$(BIN)/fedchain demo

test: setup
	$(BIN)/python -m pytest -q

setup: $(STAMP) $(NODE_MODULES)

# gcc and GMP headers: libp2p pins fastecdsa, which builds from source.
system-deps:
	@bash devnet/system-deps.sh

$(STAMP): pyproject.toml requirements.lock | system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(NODE_MODULES): devnet/package.json devnet/package-lock.json | system-deps
	cd devnet && npm ci --no-audit --no-fund --loglevel=error
	touch $@

compile: $(NODE_MODULES)
	node devnet/compile.js

bench: setup
	$(BIN)/python bench/gas.py

clean:
	rm -rf $(VENV) devnet/node_modules
