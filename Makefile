# pectrack: the two commands are `make demo` and `make test`.
# Each installs what it needs: a .venv with the project, and (as root) the Debian servers
# the integration tests start themselves (Dovecot, Prometheus).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck archcheck unit demo venv system-deps clean fuzz bench asyncapi-parser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

# Real servers for the integration tests, from Debian's packages (root only; the tests
# say clearly what is missing when run without them).
system-deps:
	@if [ "$$(id -u)" = "0" ]; then \
	  missing=""; \
	  command -v dovecot >/dev/null 2>&1 || missing="$$missing dovecot-imapd"; \
	  command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  command -v prometheus-alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	fi

# The official AsyncAPI parser (npm; node runs it) validates schemas/asyncapi.yaml in the
# tests (tests/test_asyncapi.py), installed into the venv's folder.
ASYNCAPI_PARSER := $(VENV)/node/node_modules/@asyncapi/parser/package.json
asyncapi-parser: $(ASYNCAPI_PARSER)

$(ASYNCAPI_PARSER):
	npm install --prefix $(VENV)/node --no-audit --no-fund --silent @asyncapi/parser@3.6.3

lint: venv
	$(BIN)/ruff check pectrack pipeline agents tests bench deploy examples
	$(BIN)/ruff format --check pectrack pipeline agents tests bench deploy examples

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --strict examples/consumer.py

archcheck: venv
	$(BIN)/lint-imports

unit: venv asyncapi-parser
	$(BIN)/pytest -m "not integration" -q

test: venv system-deps asyncapi-parser lint typecheck archcheck
	$(BIN)/pytest -q

# The whole system on simulated traffic until Ctrl-C; options: make demo DEMO_ARGS="--rate 10".
# The time to the first state change it prints counts from when make read this file,
# before the venv and the install.
ifneq ($(filter demo,$(MAKECMDGOALS)),)
DEMO_STARTED := $(shell date +%s.%N)
endif
demo: venv
	@$(BIN)/python -c 'import pymap' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[dev]'
	PECTRACK_COMMAND_STARTED=$(DEMO_STARTED) $(BIN)/pectrack demo $(DEMO_ARGS)

# Hostile-input property tests (parser, verifier, daticert, MIME) with a large budget.
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/core -k never_raises

bench: venv
	$(BIN)/python -m bench

# Long fault runs (docs/reliability.md): the seeded chaos test with more traffic and fault
# rounds, a 60 s broker outage, the IMAP fault tests. SOAK_BROKER=kill also SIGKILLs the
# broker on durable local-S3 storage (moto). Reproduce a run: make soak SOAK_SEED=<printed>.
.PHONY: soak
SOAK_SEED ?= $(shell date +%s)
SOAK_MESSAGES ?= 400
SOAK_ROUNDS ?= 24
SOAK_BROKER ?= cut
soak: venv system-deps
	@$(BIN)/python -c 'import moto' 2>/dev/null || $(BIN)/python -m pip install -q 'moto[server]'
	CHAOS_SEED=$(SOAK_SEED) CHAOS_MESSAGES=$(SOAK_MESSAGES) CHAOS_ROUNDS=$(SOAK_ROUNDS) \
	CHAOS_BROKER=$(SOAK_BROKER) CHAOS_SETTLE_TIMEOUT=300 FAULT_BROKER_OUTAGE=60 \
	  $(BIN)/pytest -q -s --timeout 3600 tests/integration/test_chaos.py \
	  tests/integration/test_faults_broker.py tests/integration/test_faults_imap.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
