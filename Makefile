# Sparta: every target sets itself up (virtual environment, Icarus) on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
STAMP := $(VENV)/.sparta-installed
# parallel pytest workers (the machine has 2 cores)
JOBS ?= 2

.PHONY: all demo test regress synth bench workloads docs venv iverilog clean help

help:
	@echo "make demo     generate Verilog, simulate on Verilator against the golden model, print area"
	@echo "make test     golden-model tests and cocotb benches on Icarus and Verilator (CI)"
	@echo "make regress  long random regressions (1e6 vectors per unit and simulator)"
	@echo "make synth    Yosys area (generic cells, ECP5 LUT/FF/DSP) -> docs/area.md"
	@echo "make bench    simulation speed and other measurements -> docs/results/"
	@echo "make workloads train the digits CNN/MLP and ResNet-18 topology (FP32 vs accelerator numerics) -> docs/results/workloads.json"

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

venv: $(STAMP)

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

demo: venv
	$(PY) -m scripts.demo

test: venv iverilog
	$(PYTEST) -n $(JOBS) -q --durations=25 tb

regress: venv iverilog
	SPARTA_VECTORS=1000000 SPARTA_SEED=$${SPARTA_SEED:-$$RANDOM$$RANDOM} $(PYTEST) -n $(JOBS) -q tb

synth: venv
	$(PY) -m scripts.synth

bench: venv iverilog
	$(PY) -m scripts.fp_report

workloads: venv
	$(PY) -m scripts.train --net digits_cnn
	$(PY) -m scripts.train --net digits_mlp
	$(PY) -m scripts.train --net resnet18

clean:
	rm -rf $(VENV) $${SPARTA_BUILD_DIR:-$$HOME/.cache/sparta}
