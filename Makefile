# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates or refreshes .venv itself when it is missing or older than the project files.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
DEMO_OUT ?= demo-output

.PHONY: demo test bench bench-busy venv clean chromium

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing DigitalContrast and its test dependencies into $(VENV) (first run takes a few minutes)..."
	@$(PIP) install -c constraints.txt 'torch==2.13.0' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@$(PIP) install -c constraints.txt -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	@$(BIN)/python -c "import DigitalContrastLib, DigitalContrastReaderLib, torch, monai, slicer" \
		|| { echo "Set-up failed: the packages above did not install; see the pip output."; exit 1; }
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/digital-contrast demo --out $(DEMO_OUT)

test: $(STAMP) chromium
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest Testing

# Headless Chromium renders the HTML reports in the tests. Installed with apt-get where that is
# possible (root on Debian/Ubuntu: a fresh CI machine); elsewhere the rendering test says why it skips.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
		|| command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing headless Chromium for the report tests: apt-get install --no-install-recommends chromium ..."; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
			|| echo "Chromium could not be installed: the report rendering test will fail."; \
	else \
		echo "Chromium is not installed and this user cannot install it (needs root and apt-get): the report rendering test will skip."; \
	fi

# Speed and calibration figures as JSON, each against a baseline measured in the same run:
# synthesis vs naive MONAI sliding_window_inference, warm vs cold worker, and the reader-study
# MRMC analysis's type I error over simulated null studies (bench/*.json keeps them).
bench: $(STAMP)
	$(BIN)/digital-contrast bench --json --out bench/results.json
	$(BIN)/python -m DigitalContrastReaderLib.analysis.null_simulation --studies 2000 --json | tee bench/null_simulation.json

# The contention mode: the synthesis timed while a busy loop takes one core (the postprocess
# should stay within 0.5 s; bench/busy_core.json keeps the figures).
bench-busy: $(STAMP)
	$(BIN)/digital-contrast bench --busy-core --out bench/busy_core.json

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench .pytest_cache
