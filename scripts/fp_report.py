"""make bench: run the FP unit benches exactly as `make test` does and measure them.

Writes to docs/results/fp_units.json (each key replaced by a run, the file's other keys kept):
* ``vectors_checked``: {unit: {simulator: vectors compared bit for bit against the golden model}}
  summed over every configuration the runners check;
* ``sim_cycles_per_s``: {simulator: clock cycles simulated per wall-clock second}, over the same
  benches (inputs driven and outputs checked from Python every cycle, random idle and stalls).

Usage: python -m scripts.fp_report [--vectors N]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.fp_units import unit_of_record
from scripts.results import record

RUNNERS = ["tb/test_operand_decoder.py", "tb/test_fp_mul.py", "tb/test_fp_add.py",
           "tb/test_fp_acc.py", "tb/test_fp_convert.py", "tb/test_fp_mac.py"]
ROOT = Path(__file__).resolve().parent.parent


def measure(vectors: int | None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.jsonl"
        env = dict(os.environ, SPARTA_METRICS_OUT=str(out))
        if vectors:
            env["SPARTA_VECTORS"] = str(vectors)
        runners = [r for r in RUNNERS if (ROOT / r).exists()]
        # one process: the speed figures must not share the two cores with a second worker
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", *runners],
                       cwd=ROOT, env=env, check=True)
        return [json.loads(line) for line in out.read_text().splitlines()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=None,
                        help="random vectors per bench run (default: as make test)")
    args = parser.parse_args(argv)
    if args.vectors is not None and args.vectors < 1:
        parser.error(f"--vectors must be >= 1, not {args.vectors}")
    records = measure(args.vectors)
    vectors = collections.defaultdict(lambda: collections.defaultdict(int))
    cycles = collections.defaultdict(int)
    seconds = collections.defaultdict(float)
    for r in records:
        vectors[unit_of_record(r)][r["simulator"]] += r["vectors"]
        cycles[r["simulator"]] += r["cycles"]
        seconds[r["simulator"]] += r["seconds"]
    speed = {sim: round(cycles[sim] / seconds[sim]) for sim in cycles}
    vectors = {unit: dict(sims) for unit, sims in sorted(vectors.items())}
    path = record("fp_units", {"vectors_checked": vectors, "sim_cycles_per_s": speed},
                  writer=__name__, config={"vectors": args.vectors, "runners": RUNNERS})
    for unit, sims in vectors.items():
        print(f"{unit:18s} " + "  ".join(f"{sim} {n:>9,d}" for sim, n in sorted(sims.items())))
    for sim, rate in sorted(speed.items()):
        print(f"{sim:10s} {rate:>9,d} cycles/s  ({cycles[sim]:,d} cycles in {seconds[sim]:.1f} s)")
    if {"icarus", "verilator"} <= speed.keys():
        print(f"verilator / icarus speed ratio: {speed['verilator'] / speed['icarus']:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
