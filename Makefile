# make demo: train a small model on the built-in synthetic dataset (CPU, a few minutes).
# make test: the linter and every test (what CI runs); make test-fast: the tests not marked slow (no training, no
# process started: the edit-test loop, under a minute on 2 cores).
# Both create .venv and install skinclf into it first when needed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install demo test test-fast lint browser clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,weights]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/python -m skinclf.train experiment=demo

test: $(INSTALLED) lint browser
	$(BIN)/python -m pytest

test-fast: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# tests/test_report_page.py opens report.html in Chromium: Debian's, installed where apt-get may run (as root);
# elsewhere the test is skipped and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "no Chromium: tests/test_report_page.py will be skipped (apt-get install chromium)"

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
