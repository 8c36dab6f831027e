# TinyChat: `make run` starts a node on the embedded default, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 7420

.PHONY: install run test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

run: install
	@echo "TinyChat node on tcp:$(PORT), data in ./tinychat.sqlite3; verification codes are written to this log."
	@echo "Connect the REPL from another terminal:  $(BIN)/tinychat --server tcp:host=127.0.0.1:port=$(PORT)"
	$(BIN)/twistd -n --pidfile= tinychat --listen tcp:$(PORT)

test: install
	$(BIN)/ruff check src tests
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check src tests

bench: install
	$(BIN)/python -m tinychat.bench codec

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
