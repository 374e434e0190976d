# The two commands a new user runs first:
#   make demo   set up, then run the demo on the bundled model (report in demo/index.html)
#   make test   set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.scadm-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(VENV)/bin/scadm demo --out demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf demo .pytest_cache
