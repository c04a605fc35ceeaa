"""make bench: run the FP unit benches exactly as `make test` does and measure them.

Writes to docs/results/fp_units.json (each key replaced by a run, the file's other keys kept):
* ``vectors_checked``: {unit: {simulator: vectors compared bit for bit against the golden model}}
  summed over every configuration the runners check;
* ``sim_cycles_per_s``: {simulator: clock cycles simulated per wall-clock second}, over the same
  benches, as ``make test`` runs them (the stream player where the runner asks for it);
* ``bench_speed``: {unit: {simulator: {mode: {vectors, seconds, vectors_per_s}}}}: the same
  benches run twice, ``player`` (the unit inside :mod:`sim.stream_player`, no Python in the
  cycles) and ``python`` (``SPARTA_PLAYER=0``: inputs driven and outputs checked from Python
  every cycle); ``seconds`` is the checker's wall time only (no build, no vector generation);
  a unit whose runner does not use the player runs the Python loop in both.

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


def measure(vectors: int | None, player: bool = True) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.jsonl"
        env = dict(os.environ, SPARTA_METRICS_OUT=str(out), SPARTA_PLAYER=str(int(player)))
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
    bench_speed = collections.defaultdict(lambda: collections.defaultdict(dict))
    for mode, mode_records in (("player", records), ("python", measure(args.vectors, False))):
        sums = collections.defaultdict(lambda: [0, 0.0])
        for r in mode_records:
            key = (unit_of_record(r), r["simulator"])
            sums[key][0] += r["vectors"]
            sums[key][1] += r["seconds"]
        for (unit, sim), (n, seconds) in sums.items():
            bench_speed[unit][sim][mode] = {"vectors": n, "seconds": round(seconds, 2),
                                            "vectors_per_s": round(n / seconds)}
    bench_speed = {unit: {sim: dict(modes) for sim, modes in sorted(sims.items())}
                   for unit, sims in sorted(bench_speed.items())}
    vectors = collections.defaultdict(lambda: collections.defaultdict(int))
    cycles = collections.defaultdict(int)
    seconds = collections.defaultdict(float)
    for r in records:
        vectors[unit_of_record(r)][r["simulator"]] += r["vectors"]
        cycles[r["simulator"]] += r["cycles"]
        seconds[r["simulator"]] += r["seconds"]
    speed = {sim: round(cycles[sim] / seconds[sim]) for sim in cycles}
    vectors = {unit: dict(sims) for unit, sims in sorted(vectors.items())}
    for unit, sims in bench_speed.items():
        for sim, modes in sims.items():
            if {"player", "python"} <= modes.keys():
                ratio = modes["player"]["vectors_per_s"] / modes["python"]["vectors_per_s"]
                print(f"{unit:18s} {sim:10s} {modes['python']['vectors_per_s']:>8,d} -> "
                      f"{modes['player']['vectors_per_s']:>8,d} vectors/s with the player "
                      f"(x{ratio:.1f})")
    path = record("fp_units", {"vectors_checked": vectors, "sim_cycles_per_s": speed,
                               "bench_speed": bench_speed},
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
