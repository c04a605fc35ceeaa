"""The accelerator running compiled GEMM programs from DRAM, in RTL (Verilator): cycles end to
end against the engine's cycles for the same commands -> docs/results/accel.json (its only
writer; ``sparta report`` makes the table of docs/accel.md).

Per GEMM shape, one program (:func:`sim.compiler.compile_gemms`) on the accelerator
(``tb/accelerator_tb.py``, test ``compiled_gemms_from_dram``: the DRAM image after the run is
checked byte for byte against the golden model, so every figure comes from a bit-exact run).
Each shape runs twice: compiled as usual (double-buffered: loads and stores overlap the GEMMs)
and with every instruction fenced (``compile_gemms(fence=True)``: serial, the baseline).
Recorded from the accelerator's own counters: ``cycles`` (busy cycles, start to the end),
``engine_busy_cycles``, ``dma_stall_cycles``, ``bytes_read``, ``bytes_written``, and
``cycles_serial`` of the fenced run. Computed: ``engine_cycles`` (the cycle model of the
program's GEMM commands alone, :func:`sim.engine_model.command_cycles`, the engine's exact
timing), ``engine_cycles_single_buffer`` (the same model for the larger commands of a
single-buffered compile: the engine alone with the whole memories),
``overlap_efficiency = engine_cycles / cycles``, ``speedup_vs_serial = cycles_serial /
cycles`` and ``bus_efficiency`` (bytes read and written per cycle over the bus width; reads
and writes use separate AXI channels, so it can exceed 1).

Training steps (``digits_cnn_step``, ``digits_mlp_step``): three steps and an inference pass
of a compiled network (``training_steps_from_dram``), the counters of the last step's programs
against the cycle model of their GEMMs. ``profile``: the CNN's run is made on a build whose
controller phase and ``pc`` are visible (``hw.accel.accelerator.PROFILE_SIGNALS``), the bench
counting per program of the last step (and the inference pass) the cycles of each controller
phase, with the engine busy and with a read or write beat on the bus, and the cycles spent on
each instruction, summed by section of the program (a GEMM with its epilogues and stores):
where the cycles go, from the same run as the step's figures. :data:`VARIANTS`: the CNN's
step again on other configurations (a 128-bit bus; the default accelerator, whose memories are
four times the demo's in each direction), each a key of its own.

Usage: python -m scripts.accel_bench   (sparta measure accel)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from hw.accel.accelerator import PROFILE_SIGNALS, Accelerator
from scripts.progress import spinner
from scripts.results import load, record
from sim.accel_spec import INSTRUCTION_BYTES, Opcode
from sim.compiler import compile_gemms, moved_bytes
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.elaborate import Design
from sim.engine_model import EngineCommand, command_cycles
from sim.fgmp_energy import HOROWITZ_45NM, step_energy
from sim.replay import WorkloadGemm
from sim.runner import read_metrics, run_bench
from sim.skip_timing import with_window

__all__ = ["CONFIG", "SHAPES", "main"]

#: the demo's engine (8x8 output stationary, 64 x 64 memories) on the default 64-bit bus
CONFIG = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=8, cols=8), spad_width=64,
                                         a_rows=64, b_rows=64, acc_width=64, acc_rows=64))
#: (m, n, k, A format, B format) of each measured program (one GEMM each)
SHAPES = [(64, 64, 64, "fp16", "fp16"), (128, 128, 128, "fp16", "fp16"),
          (128, 128, 128, "e4m3", "e4m3")]


def _placeholder(m, n, k, fa, fb) -> WorkloadGemm:
    """A GEMM of the shape and formats (the program depends on nothing else)."""
    tags = {"fp16": 0, "e4m3": 1, "e5m2": 2}
    return WorkloadGemm(name="gemm", kind="forward", transpose_a=False, transpose_b=False,
                        a_bits=np.zeros((m, k), np.uint16),
                        a_tags=np.full((m, k), tags[fa], np.uint8),
                        b_bits=np.zeros((k, n), np.uint16),
                        b_tags=np.full((k, n), tags[fb], np.uint8), c_bits=None, out_bits=None)


def gemm_cycles(config: AccelConfig, instructions) -> tuple[int, int]:
    """(GEMM commands, cycle-model cycles of them: the engine alone) of a program's
    ``(opcode, fields)`` instructions."""
    commands = [EngineCommand(**{name: f.get(name, 0) for name in EngineCommand.NUMBERS},
                              **{name: bool(f.get(name, 0)) for name in EngineCommand.FLAGS})
                for op, f in instructions if op is Opcode.GEMM]
    return len(commands), sum(command_cycles(config.engine, c) for c in commands)


def engine_cycles(config: AccelConfig, shape, **options) -> tuple[int, int]:
    """(GEMM commands, cycle-model cycles of them) of the compiled program of ``shape``
    (``options``: those of :func:`sim.compiler.compile_gemms`)."""
    return gemm_cycles(config, compile_gemms(config, [_placeholder(*shape)],
                                             **options).instructions)


#: the benches' random seed of the training measurements (the batches drawn; the pauses), the
#: same for every key so that their steps see the same data; ``SPARTA_SEED`` overrides it
TRAINING_SEED = 1

#: learning rate, weight decay and dropout seed of the measured training steps
HYPERPARAMETERS = {"lr": 0.05, "weight_decay": 1e-4, "dropout_seed": 0x5EED}
#: the training steps measured: the digits CNN (the issue's) and the digits MLP
TRAININGS = {
    "digits_cnn_step": {"network": "digits_cnn", "width": 8, "hidden": 64, "batch": 32,
                        "steps": 3, **HYPERPARAMETERS},
    "digits_mlp_step": {"network": "digits_mlp", "width": 8, "batch": 32, "steps": 3,
                        **HYPERPARAMETERS},
}
#: the training steps also measured on another configuration: key -> (the training measured,
#: the configuration, what differs from the demo's)
VARIANTS = {
    "digits_cnn_step_bus128": ("digits_cnn_step", dataclasses.replace(CONFIG, data_width=128),
                               "the demo's engine on a 128-bit bus"),
    "digits_cnn_step_default": ("digits_cnn_step", AccelConfig(),
                                "the default accelerator (`AccelConfig()`: 256 x 256 "
                                "scratchpads and accumulators, 64-bit bus)"),
    "digits_cnn_step_window3": ("digits_cnn_step", dataclasses.replace(
        CONFIG, engine=with_window(CONFIG.engine, 3)),
        "the demo's engine with zero skipping (lookahead window of 3, zero flags set by the "
        "engine as the loader writes the operands); the dense step's programs: no "
        "compaction, no operand swap, no output masks"),
    "digits_cnn_drowsy": ("digits_cnn_step", dataclasses.replace(
        CONFIG, engine=dataclasses.replace(with_window(CONFIG.engine, 3), output_mask=True)),
        "the demo's engine with zero skipping (window of 3) and output masks; after the "
        "steps, the inference batch also through DrowsyNet's program (the digits CNN's chosen "
        "plan at 50% of conv MACs, `docs/results/inference.json`)"),
}
#: the variants that also run DrowsyNet's inference program: the plan's key in
#: ``inference.json`` (``drowsy``, network, ``chosen_thresholds`` point)
DROWSY = {"digits_cnn_drowsy": ("digits_cnn", "0.5")}


def drowsy_sections(config: AccelConfig, training: dict, drowsy: dict) -> dict:
    """Where the products of the plain and of DrowsyNet's inference program go, layer by layer:
    each program cut after each section (a layer's GEMM with its blocks' epilogues and stores,
    :attr:`sim.train_compiler.Program.sections`), ``DONE`` appended, run on the golden model
    (:mod:`sim.accel_model`) from the initial image (the network as initialised, not after the
    steps) with the first ``batch`` digits of the training split; per section the products
    (``M * N * K``) and the products skipped (the model of the RTL's counter). A model figure,
    not a run of the RTL."""
    from sim.accel_model import AcceleratorModel, assemble
    from sim.drowsy import DrowsyPlan
    from sim.nn.data import load_digits_split
    from sim.nn.networks import digits_cnn
    from sim.train_compiler import batch_bits, compile_training_step, drowsy_inference_program

    network = digits_cnn(width=training["width"], hidden=training["hidden"], seed=1)
    compiled = compile_training_step(network, config, training["batch"],
                                     **{k: training[k] for k in HYPERPARAMETERS})
    layout = compiled.layout
    x = load_digits_split(seed=0).x_train[:training["batch"]]
    batch = layout.regions[f"{layout.layers[0].name}.input"]
    data = layout.region_bytes(batch.name, batch_bits(layout, x))
    programs = {"plain": compiled.programs["inference"],
                "drowsy": drowsy_inference_program(layout, DrowsyPlan(**drowsy))}
    out = {}
    for name, program in programs.items():
        rows, before = [], (0, 0)
        for section, _, end in program.sections:
            instructions = program.instructions[:end] + [(Opcode.DONE, {})]
            code = assemble(instructions)
            dram = bytearray(program.prog_base + len(code))
            dram[:layout.size] = compiled.image
            dram[batch.addr:batch.addr + len(data)] = data
            dram[program.prog_base:] = code
            run = AcceleratorModel(config).run(dram, program.prog_base, len(instructions))
            rows.append({"section": section, "products": run.products - before[0],
                         "products_skipped": run.products_skipped - before[1]})
            before = (run.products, run.products_skipped)
        out[name] = rows
    return {**out, "source": "golden model (sim.accel_model): the network as initialised, the "
                             "training split's first batch"}


def drowsy_plan(network: str, point: str) -> dict:
    """The fields of the DrowsyNet plan chosen for ``network`` at ``point`` (the fraction of
    conv MACs skipped) by ``sparta measure inference`` (``docs/results/inference.json``), with
    its rescaling and seed 0."""
    entry = load("inference", reader=__name__)["drowsy"]["networks"][network]
    return {"thresholds": entry["chosen_thresholds"][point],
            "rescale": entry["goal"]["chosen_rescaling"] == "rescale", "seed": 0}


def measure_training(config: AccelConfig, training: dict, *, simulator: str = "verilator",
                     pause: float = 0.0, quiet: bool = True, profile: bool = False,
                     drowsy: dict | None = None) -> dict:
    """Run ``training["steps"]`` training steps and one inference pass of a network on the RTL
    (``tb/accelerator_tb.py``, ``training_steps_from_dram``: every program's DRAM image, status
    and counters checked against the golden model, so a returned figure comes from a bit-exact
    run) and return the measurement: per program kind the RTL counters of the last step, the
    engine alone (the cycle model of the GEMM commands the golden model ran, with the
    operands' zeros on a skipping engine; the bench checks the RTL's engine busy counter
    against it; ``engine_cycles_dense``: the dense timing of the same commands), the overlap
    and the bus efficiency,
    the compiler's predicted bytes and the host's interactions per step. ``profile``: the same
    run on a build whose controller phase is visible, the bench's profiler sampling every
    cycle; the row then has a ``profile`` (:func:`_profile`) of the last step's programs and
    the inference pass. ``drowsy``: a DrowsyNet plan's fields; the inference batch then also
    runs through its program (``programs["drowsy_inference"]``)."""
    import time

    from sim.nn.networks import digits_cnn, digits_mlp
    from sim.train_compiler import compile_training_step, training_programs
    spec = accel_config_to_dict(config)
    seed = int(os.environ.get("SPARTA_SEED", TRAINING_SEED))
    run_dir = run_bench(Design(Accelerator, config), toplevel="accelerator",
                        bench_module="tb.accelerator_tb", simulator=simulator, seed=seed,
                        testcase="training_steps_from_dram", quiet=quiet,
                        public=PROFILE_SIGNALS if profile else (),
                        case={"config": spec, "pause": pause, "training": training,
                              "profile": profile, **({"drowsy": drowsy} if drowsy else {})})
    metrics = read_metrics(run_dir)
    steps = [r for r in metrics if "step" in r]
    (inference,) = [r for r in metrics if r.get("inference")]
    drowsy_rows = [r for r in metrics if r.get("drowsy_inference")]
    network = (digits_cnn(width=training["width"], hidden=training["hidden"], seed=1)
               if training["network"] == "digits_cnn"
               else digits_mlp(width=training["width"], seed=1))
    compiled = compile_training_step(network, config, training["batch"], step=len(steps) - 1,
                                     **{k: training[k] for k in HYPERPARAMETERS})
    last = steps[-1]
    skipping = config.engine.array.skip_window > 1
    programs = {}
    runs = [("forward", last), ("backward_update", last), ("inference", inference)]
    if drowsy:
        from sim.drowsy import DrowsyPlan
        from sim.train_compiler import drowsy_inference_program
        compiled.programs["drowsy_inference"] = drowsy_inference_program(
            compiled.layout, DrowsyPlan(**drowsy))
        (row,) = drowsy_rows
        runs.append(("drowsy_inference", row))
    for kind, source in runs:
        program = compiled.programs[kind]
        commands, dense = gemm_cycles(config, program.instructions)
        # the engine alone: the cycle model over the GEMMs the golden model ran, with the
        # operands' zeros on a skipping engine (the bench checked the RTL's busy counter
        # against it); without skipping it is the commands' dense timing
        engine = source[f"{kind}_engine_model_cycles"]
        if not skipping and engine != dense:
            raise RuntimeError(f"{kind}: the golden model's engine cycles {engine} differ from "
                               f"the dense cycle model's {dense}")
        got = {key: source[f"{kind}_{key}"] for key in ("cycles", "engine_busy_cycles",
                                                       "dma_stall_cycles", "bytes_read",
                                                       "bytes_written")}
        if (got["bytes_read"], got["bytes_written"]) != (program.bytes_read,
                                                         program.bytes_written):
            raise RuntimeError(f"{kind}: the bus moved {got['bytes_read']}/"
                               f"{got['bytes_written']} bytes, the compiler predicted "
                               f"{program.bytes_read}/{program.bytes_written}")
        products = source[f"{kind}_products"]
        programs[kind] = {
            **got, "instructions": program.prog_len, "gemm_commands": commands,
            "products": products, "products_skipped": source[f"{kind}_products_skipped"],
            "engine_cycles": engine,
            "engine_cycles_source": ("cycle model of the window with the operands' zeros"
                                     if skipping else "cycle model"),
            "engine_cycles_dense": dense,
            "overlap_efficiency": round(engine / got["cycles"], 4),
            "predicted_bytes_read": program.bytes_read,
            "predicted_bytes_written": program.bytes_written,
            "bus_efficiency": round((got["bytes_read"] + got["bytes_written"])
                                    / (got["cycles"] * config.beat_bytes), 4)}
    # what the host moves per step (sim.train_compiler.run_training_step): the step's programs
    # when they carry new dropout seeds, the batch and dLogits written; the logits read
    regions = compiled.layout.regions
    batch_region = regions[f"{compiled.layout.layers[0].name}.input"]
    host_bytes_written = sum(r.rows * r.stride for r in (batch_region, regions["dlogits"]))
    if compiled.layout.has_dropout:
        host_bytes_written += sum(len(compiled.programs[k].code)
                                  for k in ("forward", "backward_update"))
    host_bytes_read = regions["logits"].rows * regions["logits"].stride
    # the host's CPU time per step for the step's programs (new dropout seeds): Python on this
    # machine, mean of three steps; not in the accelerator's cycles
    hyper = {k: training[k] for k in HYPERPARAMETERS}
    began = time.perf_counter()
    if compiled.layout.has_dropout:
        for step in range(3):
            training_programs(compiled.layout, step=step, **hyper)
    host_program_seconds = (time.perf_counter() - began) / 3
    step = ("forward", "backward_update")
    step_products = {key: sum(programs[kind][key] for kind in step)
                     for key in ("products", "products_skipped", "bytes_read", "bytes_written")}
    step_cycles = programs["forward"]["cycles"] + programs["backward_update"]["cycles"]
    step_engine = programs["forward"]["engine_cycles"] + \
        programs["backward_update"]["engine_cycles"]
    return {"network": training["network"], "batch": training["batch"],
            "beat_bytes": config.beat_bytes, "seed": seed,
            "steps": len(steps), "source": "rtl", "bit_exact": True,
            "losses": [r["loss"] for r in steps],
            "cycles": step_cycles, "engine_cycles": step_engine,
            "overlap_efficiency": round(step_engine / step_cycles, 4),
            "engine_busy_cycles": programs["forward"]["engine_busy_cycles"]
            + programs["backward_update"]["engine_busy_cycles"],
            "dram_bytes_read": programs["forward"]["bytes_read"]
            + programs["backward_update"]["bytes_read"],
            "dram_bytes_written": programs["forward"]["bytes_written"]
            + programs["backward_update"]["bytes_written"],
            "host_interactions": compiled.host_interactions,
            "host_bytes_written": host_bytes_written, "host_bytes_read": host_bytes_read,
            "host_program_seconds": round(host_program_seconds, 4),
            "products": step_products["products"],
            "products_skipped": step_products["products_skipped"],
            "energy": step_energy_from_counters(compiled.layout.formats, step_products),
            "programs": programs,
            **({"drowsy": drowsy} if drowsy else {}),
            **({"profile": _profile(metrics, compiled, config)} if profile else {})}


def step_energy_from_counters(formats, counts: dict) -> dict:
    """Energy of a training step from the per-op table (:data:`sim.fgmp_energy.HOROWITZ_45NM`,
    :func:`sim.fgmp_energy.step_energy`) fed with what the RTL counted: the products the PEs
    computed (``products``, the ``M * N * K`` of the programs' GEMMs, minus the
    ``products_skipped`` counter) and the DRAM bytes (the AXI byte counters). An estimate: a
    model priced with measured counts. Every operand is in one format (``formats``, the
    compiler's :class:`sim.train_compiler.Formats`); fp16 is the only one priced here."""
    used = set(dataclasses.astuple(formats))
    if used != {"fp16"}:
        raise ValueError(f"step energy: every operand must be fp16 to price the products "
                         f"(the counters do not split them by format), not {sorted(used)}")
    computed = counts["products"] - counts["products_skipped"]
    energy = step_energy(products={"fp8_fp8": 0, "fp8_fp16": 0, "fp16_fp16": computed,
                                   "macs": computed},
                         dram_bytes=counts["bytes_read"] + counts["bytes_written"])
    return {"products_computed": computed,
            "dram_bytes": counts["bytes_read"] + counts["bytes_written"],
            **{key: round(value) for key, value in energy.items()},
            "table": HOROWITZ_45NM.source}


#: the training step whose cycles are profiled (the same run as its measurement)
PROFILED = "digits_cnn_step"


def _profile(metrics: list, compiled, config: AccelConfig) -> dict:
    """Where the cycles of the last training step and the inference pass go, on the RTL: per
    program, the cycles of each controller phase (``hw.accel.controller.Phase``) and, among
    them, those with the engine busy, a read beat and a write beat on the bus; and per
    section of the program (a GEMM with its blocks' epilogues and stores,
    :attr:`sim.train_compiler.Program.sections`) the cycles the controller spent on its
    instructions (sampled ``pc``), beside the cycle model of its GEMM commands and the beats
    its transfers and fetches move (the compiler's count)."""
    programs = {}
    for row in metrics:
        if "profile" not in row:
            continue
        phases = {}
        for phase, engine, read, write, count in row["cycles"]:
            entry = phases.setdefault(phase, {"cycles": 0, "engine_busy": 0, "read_beats": 0,
                                              "write_beats": 0})
            entry["cycles"] += count
            entry["engine_busy"] += count * engine
            entry["read_beats"] += count * read
            entry["write_beats"] += count * write
        at_pc = dict(map(tuple, row["pc_cycles"]))
        program = compiled.programs[row["profile"]]
        sections = []           # in program order
        for name, first, end in program.sections:
            part = program.instructions[first:end]
            moved = moved_bytes(part, config.beat_bytes)
            commands, engine = gemm_cycles(config, part)
            sections.append({
                "name": name, "instructions": end - first, "gemm_commands": commands,
                "cycles": sum(at_pc.get(pc, 0) for pc in range(first, end)),
                "engine_cycles": engine,
                "read_beats": (moved[Opcode.LOAD] + INSTRUCTION_BYTES * (end - first))
                // config.beat_bytes,
                "write_beats": moved[Opcode.STORE] // config.beat_bytes})
        total = sum(p["cycles"] for p in phases.values())
        if sum(s["cycles"] for s in sections) != total:
            raise RuntimeError(f"{row['profile']}: the sections' cycles do not add up to the "
                               f"program's {total}")
        programs[row["profile"]] = {"cycles": total, "phases": phases, "sections": sections}
    return programs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["gemm_programs", *TRAININGS, *VARIANTS],
                        action="append",
                        help="measure only these keys (default: all; digits_cnn_step writes "
                             "profile too)")
    args = parser.parse_args(argv)
    keys = args.only or ["gemm_programs", *TRAININGS, *VARIANTS]
    spec = accel_config_to_dict(CONFIG)
    entries = {}
    for key in keys:
        if key in VARIANTS:
            training, config, variant = VARIANTS[key]
            drowsy = drowsy_plan(*DROWSY[key]) if key in DROWSY else None
            with spinner(f"accelerator on Verilator: {key} ({variant})"):
                row = {**measure_training(config, TRAININGS[training], drowsy=drowsy),
                       "variant": variant}
            if drowsy:
                row["drowsy_sections_model"] = drowsy_sections(config, TRAININGS[training],
                                                               drowsy)
            path = record("accel", {key: row}, writer=__name__,
                          config=accel_config_to_dict(config))
            print(f"{key}: {row['cycles']:,} cycles per step (RTL, {variant}), engine "
                  f"alone {row['engine_cycles']:,} (overlap {row['overlap_efficiency']:.1%}), "
                  f"DRAM {row['dram_bytes_read']:,} bytes read")
            if drowsy:
                plain, masked = (row["programs"][k] for k in ("inference", "drowsy_inference"))
                print(f"{key}: inference {plain['cycles']:,} cycles, "
                      f"{plain['products_skipped']:,} of {plain['products']:,} products "
                      f"skipped; DrowsyNet {drowsy} {masked['cycles']:,} cycles, "
                      f"{masked['products_skipped']:,} skipped (RTL counters)")
        elif key in TRAININGS:
            with spinner(f"accelerator on Verilator: {key} ({TRAININGS[key]['steps']} steps)"):
                row = measure_training(CONFIG, TRAININGS[key], profile=key == PROFILED)
            programs = row.pop("profile", None)
            entries[key] = row
            if programs is not None:
                entries["profile"] = {"network": row["network"], "batch": row["batch"],
                                      "step": row["steps"] - 1, "source": "rtl",
                                      "bit_exact": True, "programs": programs}
                for kind, program in programs.items():
                    print(f"profile {kind}: {program['cycles']:,} cycles; " + ", ".join(
                        f"{phase} {p['cycles']:,} (engine busy {p['engine_busy']:,}, read "
                        f"beats {p['read_beats']:,})" for phase, p in program["phases"].items()))
            print(f"{key}: {row['cycles']:,} cycles per step (RTL), engine alone "
                  f"{row['engine_cycles']:,} (overlap {row['overlap_efficiency']:.1%}), DRAM "
                  f"{row['dram_bytes_read']:,} bytes read, {row['dram_bytes_written']:,} "
                  f"written (bus counters = compiler prediction), losses {row['losses']}, "
                  f"inference {row['programs']['inference']['cycles']:,} cycles")
    if "gemm_programs" in keys:
        entries["gemm_programs"] = _gemm_programs(spec)
    path = record("accel", entries, writer=__name__, config=spec)
    print(f"wrote {path}; `sparta report` updates docs/accel.md")
    return 0


def _gemm_programs(spec) -> list:
    rows = []
    for m, n, k, fa, fb in SHAPES:
        label = f"{m}x{n}x{k} {fa} x {fb}"
        runs = {}
        for variant, options in (("overlapped", {}), ("serial", {"fence": True})):
            with spinner(f"accelerator on Verilator: {label}, {variant}"):
                run_dir = run_bench(Design(Accelerator, CONFIG), toplevel="accelerator",
                                    bench_module="tb.accelerator_tb", simulator="verilator",
                                    testcase="compiled_gemms_from_dram", quiet=True,
                                    case={"config": spec, "pause": 0.0, "compile": options,
                                          "fixed": [[m, n, k, False, False, False, fa, fb]]})
            (runs[variant],) = [r for r in read_metrics(run_dir) if "cycles" in r]
        metrics = runs["overlapped"]
        commands, engine = engine_cycles(CONFIG, (m, n, k, fa, fb))
        _, single = engine_cycles(CONFIG, (m, n, k, fa, fb), double_buffer=False)
        cycles = metrics["cycles"]
        row = {"gemm": [m, n, k], "a_format": fa, "b_format": fb, "source": "rtl",
               "bit_exact": True, "commands": commands, "instructions": metrics["instructions"],
               **{key: metrics[key] for key in ("cycles", "engine_busy_cycles",
                                                 "dma_stall_cycles", "bytes_read",
                                                 "bytes_written")},
               "cycles_serial": runs["serial"]["cycles"],
               "engine_cycles": engine, "engine_cycles_single_buffer": single,
               "engine_cycles_source": "cycle model",
               "overlap_efficiency": round(engine / cycles, 4),
               "speedup_vs_serial": round(runs["serial"]["cycles"] / cycles, 4),
               "bus_efficiency": round((metrics["bytes_read"] + metrics["bytes_written"])
                                       / (cycles * CONFIG.beat_bytes), 4)}
        rows.append(row)
        print(f"{label}: {cycles} cycles end to end ({row['cycles_serial']} serial: "
              f"{row['speedup_vs_serial']:.2f}x), engine alone {engine} "
              f"({row['overlap_efficiency']:.1%}; {single} with single-buffered commands: "
              f"{single / cycles:.1%}), {row['bytes_read']} bytes read, "
              f"{row['bytes_written']} written, bus {row['bus_efficiency']:.1%}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
