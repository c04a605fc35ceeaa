"""The stream player: a Verilog wrapper that lets a stream unit run through long random vector runs
on its own, without Python in every clock cycle.

A bench that drives a unit's ``i`` stream and checks its ``o`` stream from Python pays the
cocotb round trip every cycle (about 0.1-0.3 ms per vector on these machines). The wrapper,
``<toplevel>_player``, holds the unit and two memories. The bench writes the input words to a
file, the wrapper reads them (``$readmemh``), offers them to the unit and takes its outputs with
random idle and backpressure cycles (a 32-bit xorshift seeded by the bench), checks the stream
rules as the Python checker does, and writes the outputs to a file (``$writememh``) for the
bench to compare. ``tb.harness.StreamChecker`` uses it when the design under test has it.

The wrapper is transparent: with ``player__mode`` low, every port of the unit is a port of the
wrapper under its own name, so benches that drive the unit cycle by cycle (exact latency
checks, reset behaviour) run unchanged.

Ports of the player (all prefixed ``player__``)
------------------------------------------------
inputs: ``mode`` (1: the player drives ``i`` and ``o.ready``), ``load`` (read ``player_in.hex``
into the input memory at this clock edge), ``start`` (begin a run), ``dump`` (write the
outputs taken to ``player_out.hex``), ``count_in``, ``count_out``, ``seed``, ``p_idle``,
``p_stall`` (out of 256), ``max_latency``, ``drain``.

outputs: ``done``, ``status`` (:data:`STATUS`), ``sent``, ``received``, ``cycles`` (of the
transfer, without the drain), ``bad`` (the word that broke the rule, for the message).

Files are in the simulator's working directory (the bench's run directory).
"""

from __future__ import annotations

import re

__all__ = ["player_verilog", "player_name", "STATUS", "DEPTH_BITS", "IN_FILE", "OUT_FILE"]

#: log2 of the memories' depth (vectors of one run)
DEPTH_BITS = 15
IN_FILE, OUT_FILE = "player_in.hex", "player_out.hex"
#: ``player__status`` codes
STATUS = {"ok": 0, "rule": 1, "extra": 2, "stalled": 3, "drain": 4}

_PORT = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+)\s*;", re.M)


def player_name(toplevel: str) -> str:
    return f"{toplevel}_player"


def _ports(verilog: str, toplevel: str) -> dict[str, tuple[str, int]]:
    start = verilog.find(f"module {toplevel}(")
    if start < 0:
        raise ValueError(f"toplevel: no module {toplevel!r} in the Verilog")
    body = verilog[start:verilog.index("endmodule", start)]
    return {name: (direction, int(high or 0) + 1)
            for direction, high, name in _PORT.findall(body)}


def player_verilog(verilog: str, toplevel: str, *, depth_bits: int = DEPTH_BITS) -> str:
    """``verilog`` (holding module ``toplevel``, a unit with ``i``/``o`` streams) plus the
    wrapper module :func:`player_name` (module docstring). The wrapper has ``clk`` and ``rst``
    even when the unit is combinational (they then drive only the player)."""
    ports = _ports(verilog, toplevel)
    needed = {"i__valid": "input", "i__ready": "output",
              "i__payload": "input", "o__valid": "output", "o__ready": "input",
              "o__payload": "output"}
    missing = [name for name, direction in needed.items()
               if ports.get(name, (None,))[0] != direction]
    if missing:
        raise ValueError(f"toplevel: {toplevel} needs the ports {', '.join(missing)} (streams "
                         f"i and o) for the stream player")
    clocked = "clk" in ports
    ports = {"clk": ("input", 1), "rst": ("input", 1), **ports}   # the player's clock, always
    iw, ow = ports["i__payload"][1], ports["o__payload"][1]

    def decl(direction, width, name):
        return f"  {direction} {'' if width == 1 else f'[{width - 1}:0] '}{name};"

    own = [("input", 1, "mode"), ("input", 1, "load"), ("input", 1, "start"),
           ("input", 1, "dump"), ("input", 32, "count_in"), ("input", 32, "count_out"),
           ("input", 32, "seed"), ("input", 8, "p_idle"), ("input", 8, "p_stall"),
           ("input", 32, "max_latency"), ("input", 32, "drain"), ("output", 1, "done"),
           ("output", 3, "status"), ("output", 32, "sent"), ("output", 32, "received"),
           ("output", 32, "cycles"), ("output", ow, "bad")]
    names = list(ports) + [f"player__{name}" for _, _, name in own]
    lines = [f"module {player_name(toplevel)}({', '.join(names)});"]
    lines += [decl(d, w, n) for n, (d, w) in ports.items()]
    lines += [decl(d, w, f"player__{n}") for d, w, n in own]
    connections = []
    for name, (direction, width) in ports.items():
        if name in ("clk", "rst") and not clocked:
            continue                    # a combinational unit: the clock is the player's
        if name in ("i__valid", "i__payload", "o__ready"):
            connections.append(f".{name}(u_{name})")
        else:
            connections.append(f".{name}({name})")
    depth = 1 << depth_bits
    lines.append(f"""
  localparam DEPTH = {depth};
  localparam PLAY = 2'd1, DRAIN = 2'd2, END = 2'd3;
  reg [1:0] phase;
  reg [{iw - 1}:0] in_mem [0:DEPTH-1];
  reg [{ow - 1}:0] out_mem [0:DEPTH-1];
  reg [31:0] lfsr, sent_r, received_r, idle_since, drain_left, cycles_r;
  reg offered, held_v, done_r;
  reg [{ow - 1}:0] held_p, bad_r;
  reg [2:0] status_r;
  // an input the bench never drove (X in Icarus) means off: the unit's own ports drive it
  wire mode = player__mode === 1'b1, load = player__load === 1'b1;
  wire start = player__start === 1'b1, dump = player__dump === 1'b1;
  wire [31:0] x1 = lfsr ^ (lfsr << 13);
  wire [31:0] x2 = x1 ^ (x1 >> 17);
  wire [31:0] x3 = x2 ^ (x2 << 5);
  wire idle_draw = lfsr[7:0] < player__p_idle;
  wire stall_draw = lfsr[15:8] < player__p_stall;
  wire p_valid = phase == PLAY && sent_r < player__count_in && (offered || !idle_draw);
  wire p_ready = phase == DRAIN || (phase == PLAY && !stall_draw);
  wire u_i__valid = mode ? p_valid : i__valid;
  wire [{iw - 1}:0] u_i__payload = mode ? in_mem[sent_r[{depth_bits - 1}:0]] : i__payload;
  wire u_o__ready = mode ? p_ready : o__ready;
  assign player__done = done_r;
  assign player__status = status_r;
  assign player__sent = sent_r;
  assign player__received = received_r;
  assign player__cycles = cycles_r;
  assign player__bad = bad_r;
  {toplevel} unit({', '.join(connections)});

  always @(posedge clk) begin
    if (load) $readmemh("{IN_FILE}", in_mem, 0, player__count_in - 1);
    if (dump && received_r != 0) $writememh("{OUT_FILE}", out_mem, 0, received_r - 1);
  end

  wire taken_in = p_valid && i__ready;
  // an output that changed while held back is not taken: the rule break is reported instead
  wire rule_broken = held_v && (!o__valid || o__payload != held_p);
  wire taken_out = o__valid && p_ready && !rule_broken;
  wire [31:0] sent_next = sent_r + taken_in;
  wire [31:0] received_next = received_r + (taken_out && received_r < player__count_out);
  always @(posedge clk) begin
    if (rst) begin
      phase <= 2'd0; done_r <= 1'b0; status_r <= 3'd0;
    end else if (start) begin
      phase <= PLAY; done_r <= 1'b0; status_r <= 3'd0; lfsr <= player__seed | 32'h1;
      sent_r <= 0; received_r <= 0; idle_since <= 0; cycles_r <= 0; offered <= 1'b0;
      held_v <= 1'b0; bad_r <= 0;
    end else if (phase == PLAY) begin
      lfsr <= x3;
      cycles_r <= cycles_r + 1;
      sent_r <= sent_next;
      offered <= p_valid && !i__ready;
      held_v <= o__valid && !p_ready;
      held_p <= o__payload;
      if (taken_out && received_r < player__count_out)
        out_mem[received_r[{depth_bits - 1}:0]] <= o__payload;
      received_r <= received_next;
      if (rule_broken) begin
        status_r <= 3'd{STATUS["rule"]}; bad_r <= held_p; phase <= END; done_r <= 1'b1;
      end else if (taken_out && received_r >= player__count_out) begin
        status_r <= 3'd{STATUS["extra"]}; bad_r <= o__payload; phase <= END; done_r <= 1'b1;
      end else if (idle_since > player__max_latency + 16) begin
        status_r <= 3'd{STATUS["stalled"]}; phase <= END; done_r <= 1'b1;
      end else if (sent_next == player__count_in && received_next == player__count_out) begin
        phase <= DRAIN; drain_left <= player__drain;
        if (player__drain == 0) begin phase <= END; done_r <= 1'b1; end
      end
      if (taken_in || taken_out) idle_since <= 0;
      else if (p_ready && (p_valid || sent_r == player__count_in)) idle_since <= idle_since + 1;
    end else if (phase == DRAIN) begin
      if (o__valid) begin
        status_r <= 3'd{STATUS["drain"]}; bad_r <= o__payload; phase <= END; done_r <= 1'b1;
      end else if (drain_left <= 1) begin
        phase <= END; done_r <= 1'b1;
      end
      drain_left <= drain_left - 1;
    end
  end
endmodule
""")
    return verilog + "\n" + "\n".join(lines)

