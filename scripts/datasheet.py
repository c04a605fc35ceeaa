# amaranth: UnusedElaboratable=no
# (the engine is built only to read its signature, never elaborated here)
"""Datasheet of a generated GEMM engine: what an integrator needs besides the Verilog.

* the configuration, echoed back with its derived values (banks, PEs);
* the ports of the Verilog top level (name, direction, width; streams as
  ``<name>__valid`` / ``__ready`` / ``__payload``);
* the command word, the status word and the read-request word, field by field (bit offset and
  width), and the error codes;
* timing: the cycle model of :mod:`sim.engine_model` (the benches assert it cycle for cycle)
  evaluated on reference commands, and the peak throughput.

Everything is read from the gateware and the models themselves, so the datasheet cannot
disagree with the Verilog it describes. Nothing is elaborated.
"""

from __future__ import annotations

import dataclasses
import json

from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from hw.engine.commands import ErrorCode, Status, command_layout, read_request_layout
from hw.engine.engine import GemmEngine
from sim.config import EngineConfig
from sim.engine_model import REJECT_CYCLES, EngineCommand, command_cycles, ideal_cycles

__all__ = ["datasheet", "datasheet_markdown"]


def _ports(engine) -> list[dict]:
    ports = [{"name": "clk", "direction": "in", "width": 1},
             {"name": "rst", "direction": "in", "width": 1}]
    for path, member in engine.signature.members.flatten():
        if member.is_signature:
            continue
        direction = "in" if member.flow == wiring.In else "out"
        ports.append({"name": "__".join(str(part) for part in path), "direction": direction,
                      "width": Shape.cast(member.shape).width})
    return ports


def _fields(layout) -> list[dict]:
    layout = data.Layout.cast(layout)
    return sorted(({"name": name, "offset": field.offset, "width": field.width}
                   for name, field in layout), key=lambda row: row["offset"])


def _reference_commands(config: EngineConfig) -> list[tuple[str, EngineCommand]]:
    rows, cols = config.array.rows, config.array.cols
    k_max = min(config.spad_width, config.b_rows)
    m_max = min(config.a_rows, config.acc_rows)
    n_max = min(config.spad_width, config.acc_width)
    return [
        ("smallest (1 x 1 x 1)", EngineCommand(m=1, n=1, k=1)),
        (f"one tile ({rows} x {cols} x {k_max})", EngineCommand(m=rows, n=cols, k=k_max)),
        (f"largest that fits ({m_max} x {n_max} x {k_max})",
         EngineCommand(m=m_max, n=n_max, k=k_max)),
        ("largest, accumulating", EngineCommand(m=m_max, n=n_max, k=k_max, accumulate=True)),
    ]


def datasheet(config: EngineConfig) -> dict:
    """The datasheet of the engine generated for ``config``, as JSON-serialisable data."""
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    engine = GemmEngine(config)
    timing = []
    for label, command in _reference_commands(config):
        cycles = command_cycles(config, command)
        timing.append({"command": label, "m": command.m, "n": command.n, "k": command.k,
                       "accumulate": command.accumulate, "cycles": cycles,
                       "ideal_cycles": ideal_cycles(config, command),
                       "utilization": round(command.m * command.n * command.k
                                            / (config.array.pes * cycles), 4)})
    return {
        "top": "gemm_engine",
        "config": dataclasses.asdict(config),
        "derived": {"pes": config.array.pes, "a_banks": config.a_banks,
                    "b_banks": config.b_banks, "acc_banks": config.acc_banks},
        "ports": _ports(engine),
        "command_word": _fields(command_layout(config)),
        "status_word": _fields(Status),
        "read_request_word": _fields(read_request_layout(config)),
        "error_codes": {code.name: code.value for code in ErrorCode},
        "throughput": {"peak_macs_per_cycle": config.array.pes},
        "timing": timing,
        "timing_note": ("cycles from the cycle a command is accepted (cmd.valid and cmd.ready) "
                        "to the cycle status.done is high, from sim.engine_model.command_cycles "
                        "(asserted against the RTL by tb/test_engine.py); a rejected command "
                        f"takes {REJECT_CYCLES} cycle and raises status.error with its code"),
    }


def datasheet_markdown(sheet: dict) -> str:
    """The datasheet as a Markdown page."""
    config = sheet["config"]
    array = config["array"]
    lines = [
        f"# `{sheet['top']}` datasheet",
        "",
        f"{array['rows']} x {array['cols']} {array['dataflow'].upper()} array "
        f"({sheet['derived']['pes']} PEs, multiplier stages {array['mul_stages']}, operands "
        f"A {'/'.join(array['a_formats'])}, B {'/'.join(array['b_formats'])}, FP32 "
        f"accumulation); scratchpads A {config['a_rows']} x {config['spad_width']}, B "
        f"{config['b_rows']} x {config['spad_width']}, accumulators {config['acc_rows']} x "
        f"{config['acc_width']}; read-back formats {'/'.join(config['out_formats'])}; zero "
        f"gate {'on' if array['skip_zeros'] else 'off'}, lookahead window "
        f"{array['skip_window']}, output masks {'on' if config['output_mask'] else 'off'}.",
        "",
        "## Configuration",
        "",
        "```json",
    ]
    lines += json.dumps(config, indent=1).splitlines()
    lines += ["```", "", "## Ports", "", "| port | direction | width |", "|---|---|---:|"]
    lines += [f"| `{p['name']}` | {p['direction']} | {p['width']} |" for p in sheet["ports"]]
    for title, key in (("Command word (`cmd__payload`)", "command_word"),
                       ("Status word (`status`)", "status_word"),
                       ("Read request (`rd_req__payload`)", "read_request_word")):
        lines += ["", f"## {title}", "", "| field | bits |", "|---|---|"]
        lines += [f"| `{f['name']}` | {f['offset'] + f['width'] - 1}:{f['offset']} |"
                  if f["width"] > 1 else f"| `{f['name']}` | {f['offset']} |"
                  for f in sheet[key]]
    lines += ["", "## Error codes", "", "| code | name |", "|---:|---|"]
    lines += [f"| {value} | `{name}` |" for name, value in sheet["error_codes"].items()]
    lines += ["", "## Timing", "", sheet["timing_note"] + ".", "",
              f"Peak throughput: {sheet['throughput']['peak_macs_per_cycle']} MACs per cycle.",
              "", "| command | cycles | ideal (MACs / PEs) | utilization |", "|---|---:|---:|---:|"]
    lines += [f"| {t['command']} | {t['cycles']} | {t['ideal_cycles']} | {t['utilization']:.1%} |"
              for t in sheet["timing"]]
    return "\n".join(lines) + "\n"
