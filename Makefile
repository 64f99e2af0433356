# Everything a fresh machine needs, then the job. `make demo` and `make test` are the
# two commands of the README; .ci/run calls `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NODE_MODULES := devnet/node_modules/.installed
# Slither in its own venv: slither-analyzer 0.11.6 needs web3<8 (the project pins web3 8.0.0).
SLITHER_VENV  := .venv-slither
SLITHER_STAMP := $(SLITHER_VENV)/.installed

.PHONY: demo test setup system-deps compile bench clean slither-setup slither forge-test

demo: setup
	$(BIN)/fedchain demo

# pytest also runs the Foundry fuzz/invariant tests and Slither (tests/test_forge.py,
# tests/test_slither.py); forge comes with `npm ci`, Slither with slither-setup.
test: setup slither-setup
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

slither-setup: $(SLITHER_STAMP)
$(SLITHER_STAMP): devnet/slither-requirements.txt | system-deps
	$(PY) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/pip install -q --upgrade pip
	$(SLITHER_VENV)/bin/pip install -q -r devnet/slither-requirements.txt
	touch $@

slither: $(SLITHER_STAMP) $(NODE_MODULES)      # fails on any high/medium finding
	bash devnet/slither.sh

forge-test: $(NODE_MODULES)                    # fuzz + invariant tests, offline
	cd contracts/foundry && ../../devnet/node_modules/.bin/forge test

compile: $(NODE_MODULES)
	node devnet/compile.js

bench: setup
	$(BIN)/python bench/gas.py

clean:
	rm -rf $(VENV) $(SLITHER_VENV) devnet/node_modules contracts/foundry/out contracts/foundry/cache
