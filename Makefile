# kolla-entry: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test lint unit demo demo-small charts container-test bench bench-overlay stress clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

test: lint unit

lint: $(STAMP)
	$(BIN)/ruff check kolla_entry tests bench examples charts/build.py
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -m "not stress"

demo: $(STAMP)
	$(BIN)/python examples/keystone/demo.py

demo-small: $(STAMP)
	bash examples/small/demo.sh

charts: $(STAMP)
	$(BIN)/python charts/build.py

container-test: $(STAMP)
	bash images/test/container-test.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

bench-overlay: $(STAMP)
	$(BIN)/python bench/overlay.py

stress: $(STAMP)
	KOLLA_ENTRY_STRESS=1 $(BIN)/pytest -m "slow or stress"

clean:
	rm -rf $(VENV) work
