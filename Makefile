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

.PHONY: demo test bench bench-busy venv clean chromium postgresql stock-slicer prepare-screenshot

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

test: $(STAMP) chromium postgresql stock-slicer
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest Testing

# Stand-ins for stock 3D Slicer 5.10 and 5.12: Python 3.12 (pyenv has it on these machines) with exactly
# the packages each release bundles (Testing/stock_slicer/slicer-*.txt), built once into .stock-slicer/.
# The stock_slicer tests use them; without a Python 3.12 they skip and say why.
stock-slicer: $(STAMP)
	@$(BIN)/python Testing/stock_slicer_env.py build || echo "The stock-Slicer stand-ins could not be built: their tests will say why."

# Headless Chromium renders the HTML reports in the tests and drives the browser review page (playwright
# with executable_path; never 'playwright install'). Installed with apt-get where that is possible (root on
# Debian/Ubuntu: a fresh CI machine); elsewhere the browser tests say why they skip.
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

# The multi-site reader-study tests start a real PostgreSQL server (Debian's, run as user postgres on
# a temporary folder and a free loopback port). Installed with apt-get where that is possible; elsewhere
# those tests say why they skip.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing PostgreSQL for the multi-site store tests: apt-get install --no-install-recommends postgresql ..."; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; } \
			|| echo "PostgreSQL could not be installed: the PostgreSQL store tests will skip."; \
	else \
		echo "PostgreSQL is not installed and this user cannot install it (needs root and apt-get): the PostgreSQL store tests will skip."; \
	fi

# Speed and calibration figures as JSON, each against a baseline measured in the same run:
# synthesis vs naive MONAI sliding_window_inference, warm vs cold worker, a warm job through the
# synthesis service vs the same job in a warm local worker (the service's overhead), how long the Slicer
# module's logic holds the GUI thread (synthesis + registration + export, 512x512x300), the reader-study
# MRMC analysis's type I error over simulated null studies, and the multi-site reader study on a real
# PostgreSQL: 3 sites x 4 readers submitting from 12 processes for 2 minutes with 5 kill -9, answers/s and
# p95 submit latency against one SQLite store in the same run, and the web reading station in headless
# Chromium: Submit -> the next item's images on screen over 20 items (median, p95) against the store's own
# calls, and the memory per connected reader (bench/*.json keeps them).
bench: $(STAMP) postgresql chromium
	$(BIN)/digital-contrast bench --json --out bench/results.json
	$(BIN)/python -m DigitalContrastLib.benchmarks.gui_thread --out bench/gui_thread.json
	$(BIN)/python -m DigitalContrastReaderLib.analysis.null_simulation --studies 2000 --json | tee bench/null_simulation.json
	$(BIN)/python -m DigitalContrastReaderLib.analysis.null_simulation --studies 2000 --readers 6 --groups 2 --json | tee bench/null_simulation_split_plot.json
	$(BIN)/python Testing/multisite_load.py --seconds 120 --kills 5 --json | tee bench/multisite_load.json
	$(BIN)/python Testing/station_bench.py --items 20 --json | tee bench/reading_station.json

# The README's picture of the prepare QC report (a generated site-like cohort, about 4 min on 2 cores).
prepare-screenshot: $(STAMP) chromium
	$(BIN)/python Testing/prepare_screenshot.py Resources/Screenshots/prepare_report.png

# The contention mode: the synthesis timed while a busy loop takes one core (the postprocess
# should stay within 0.5 s; bench/busy_core.json keeps the figures).
bench-busy: $(STAMP)
	$(BIN)/digital-contrast bench --busy-core --out bench/busy_core.json

clean:
	rm -rf $(VENV) $(DEMO_OUT) bench .pytest_cache .stock-slicer
