"""Accelerator configuration: a tree of frozen dataclasses, validated on construction.

The same objects configure the gateware (``hw/``), the golden and cycle models (``sim/``) and
the benches. Derived values are properties; presets are made with :func:`dataclasses.replace`.
Pure Python: no Amaranth here.
"""

from __future__ import annotations

import dataclasses

from .formats import OPERAND_FORMATS, STORE_FORMATS

__all__ = ["DATAFLOWS", "MAX_SKIP_WINDOW", "MAX_ACC_INTERLEAVE", "ArrayConfig", "EngineConfig", "AccelConfig", "FAST_ARRAY", "PRESETS",
           "engine_config_from", "load_engine_config", "config_to_dict", "accel_config_to_dict",
           "accel_config_from"]

DATAFLOWS = ("os", "ws")
MAX_DIM = 32
MUL_CUT_POINTS = 3          # hw.fp.multiplier.ProductDatapath.CUT_POINTS
#: Places in the FP32 adder where a pipeline register may go (after align, add, normalise);
#: ``hw.fp.adder`` builds on this number
ADD_CUT_POINTS = 3
#: Deepest zero-skip lookahead window of the array (``ArrayConfig.skip_window``).
MAX_SKIP_WINDOW = 4
#: Most outputs an output-stationary PE accumulates in rotation (``ArrayConfig.acc_interleave``):
#: its loop's FP32 adder has four cut points (hw.fp.adder.ADD_CUT_POINTS and one inside align)
MAX_ACC_INTERLEAVE = 5


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")


def _check_formats(name, formats, allowed):
    if isinstance(formats, str) or not isinstance(formats, tuple) or not formats:
        raise ValueError(f"{name} must be a non-empty tuple of {sorted(allowed)}, not {formats!r}")
    for fmt in formats:
        if fmt not in allowed:
            raise ValueError(f"{name} must contain only {sorted(allowed)}, not {fmt!r}")
    if len(set(formats)) != len(formats):
        raise ValueError(f"{name} must not repeat a format: {formats!r}")


def next_power_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """The systolic array of processing elements.

    Parameters
    ----------
    rows, cols : int
        Array size R x C, each 1..32 (any value, not only powers of two).
    dataflow : str
        ``"os"`` (output stationary: each PE owns one output, operands flow through) or
        ``"ws"`` (weight stationary: each PE holds one B element, partial sums flow down).
    a_formats, b_formats : tuple of str
        Operand formats the PEs accept on each side (``"fp16"``, ``"e4m3"``, ``"e5m2"``).
    mul_stages : int
        Pipeline registers inside each PE's multiplier, 0..3.
    skip_zeros : bool
        Zero gate in every PE: a product whose A or B operand is ``+0`` or ``-0`` (in its own
        format) leaves the accumulator / partial sum unchanged, the semantics of
        :func:`sim.sparsity.gemm_skip`. Timing is unchanged. ``False`` (the default) builds
        exactly the dense PE of :func:`sim.gemm.gemm`.
    skip_window : int
        Lookahead window of zero skipping, 1..:data:`MAX_SKIP_WINDOW` (output stationary, with
        ``skip_zeros`` only): each array row picks its next step with a non-zero A operand
        (and some non-zero B operand) among the next ``skip_window`` steps, and the B operands
        of the whole window flow down the columns (:mod:`sim.skip_model`,
        ``SkipOption(schedule="lookahead", depth=skip_window)``). ``1`` (the default) is the
        dense schedule.
    narrow_path : bool
        A second, narrow significand multiplier in each PE for products of two FP8 operands
        (``True``, the default; :class:`hw.fp.multiplier.ProductDatapath`). ``False`` builds
        the wide one only, which computes FP8 products too: one DSP and a few dozen LUTs less
        per PE on an ECP5, the same results and cycles.
    acc_interleave : int
        Outputs each output-stationary PE accumulates in rotation, ``L`` in 1..5 (the loop's
        FP32 adder gets ``L - 1`` pipeline registers, so the accumulate loop is no longer one
        combinational cycle; each output still adds its products in ``k`` order: the same bits).
        The array takes ``L`` tiles at once, their steps interleaved
        (:mod:`sim.array_timing`); the engine's output-stationary sequencer issues them in
        groups of ``L`` (not with step lists). ``1`` (the default) is one tile at a time.
    psum_stages : int
        Pipeline registers inside each weight-stationary PE's FP32 adder, ``P`` in 0..3
        (``dataflow="ws"`` only). The partial sum moves down the column with no loop around
        it, so the add can be cut freely: a step then spends ``1 + P`` cycles in each row
        (the array skews the rows of A ``1 + P`` cycles apart), results come ``R P`` cycles
        later and weight tiles are at least ``(R - 1) P`` cycles longer
        (:class:`sim.array_timing.WeightStationaryTiming`); the same bits. ``0`` (the default)
        adds in the cycle of the step.
    edge_decode : bool
        Decode each operand once, at the array's edge (one decoder per row and per column),
        and pass the decoded fields (sign, exponent, normalised significand, class, FP8 flag)
        through the PEs instead of the tagged operands, so that no PE decodes (output
        stationary, ``skip_window`` 1). The same results and cycles; ``False`` (the default)
        decodes in every PE.
    """

    rows: int = 8
    cols: int = 8
    dataflow: str = "os"
    a_formats: tuple = ("fp16", "e4m3", "e5m2")
    b_formats: tuple = ("fp16", "e4m3", "e5m2")
    mul_stages: int = 0
    skip_zeros: bool = False
    skip_window: int = 1
    narrow_path: bool = True
    acc_interleave: int = 1
    psum_stages: int = 0
    edge_decode: bool = False

    def __post_init__(self):
        _check_int("rows", self.rows, 1, MAX_DIM)
        _check_int("cols", self.cols, 1, MAX_DIM)
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow must be one of {list(DATAFLOWS)}, not {self.dataflow!r}")
        _check_formats("a_formats", self.a_formats, OPERAND_FORMATS)
        _check_formats("b_formats", self.b_formats, OPERAND_FORMATS)
        _check_int("mul_stages", self.mul_stages, 0, MUL_CUT_POINTS)
        if not isinstance(self.skip_zeros, bool):
            raise ValueError(f"skip_zeros must be a bool (True or False), not {self.skip_zeros!r}")
        _check_int("skip_window", self.skip_window, 1, MAX_SKIP_WINDOW)
        if not isinstance(self.narrow_path, bool):
            raise ValueError(f"narrow_path must be a bool (True or False), "
                             f"not {self.narrow_path!r}")
        _check_int("acc_interleave", self.acc_interleave, 1, MAX_ACC_INTERLEAVE)
        if self.acc_interleave > 1 and (self.dataflow != "os" or self.skip_window > 1):
            raise ValueError(
                f"acc_interleave {self.acc_interleave} needs dataflow 'os' and skip_window 1 "
                f"(got {self.dataflow!r}, skip_window {self.skip_window}): a weight-stationary "
                f"partial sum moves down its column and no loop holds it; 1 is today's PE")
        _check_int("psum_stages", self.psum_stages, 0, ADD_CUT_POINTS)
        if self.psum_stages and self.dataflow != "ws":
            raise ValueError(f"psum_stages {self.psum_stages} needs dataflow 'ws', not "
                             f"{self.dataflow!r}: an output-stationary PE's sum loops back "
                             f"into its adder (acc_interleave pipelines that loop)")
        if not isinstance(self.edge_decode, bool):
            raise ValueError(f"edge_decode must be a bool (True or False), "
                             f"not {self.edge_decode!r}")
        if self.edge_decode and (self.dataflow != "os" or self.skip_window > 1):
            raise ValueError(
                f"edge_decode needs dataflow 'os' and skip_window 1 (got {self.dataflow!r}, "
                f"skip_window {self.skip_window}): a weight-stationary PE keeps its operand "
                f"and a window's B operands are chosen in the PE")
        if self.skip_window > 1 and not (self.skip_zeros and self.dataflow == "os"):
            raise ValueError(f"skip_window {self.skip_window} needs skip_zeros=True and "
                             f"dataflow 'os' (got skip_zeros={self.skip_zeros}, dataflow "
                             f"{self.dataflow!r}); 1 is the dense schedule")

    @property
    def pes(self) -> int:
        return self.rows * self.cols


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """The GEMM engine: array, operand scratchpads and FP32 accumulator memory.

    Scratchpads are two-dimensional: ``spad_width`` elements per row (a power of two), with
    ``a_rows`` / ``b_rows`` rows for the A and B operands and ``acc_rows`` rows of FP32
    accumulators (``acc_width`` elements per row).

    Parameters
    ----------
    array : ArrayConfig
    spad_width : int
        Elements per scratchpad row, a power of two >= the bank count (16..4096).
    a_rows, b_rows : int
        Rows of the A and B scratchpads (1..65536).
    acc_width : int
        FP32 accumulators per accumulator-memory row, a power of two >= the bank count.
    acc_rows : int
        Rows of the accumulator memory (1..65536).
    out_formats : tuple of str
        Formats results can be read back in: ``"fp32"`` and any of fp16, bf16, e4m3, e5m2.
    output_mask : bool
        Output masking (output stationary only): 1-bit keep planes beside the accumulator
        memory, one written by the host (``wr_mask``: a ReLU mask) and one by a dropout mask
        generator from a seed (``mask_cmd``); a command that selects them writes ``+0`` where
        the mask is 0, and a lookahead window (``array.skip_window >= 2``) skips the steps of
        rows and columns of a tile whose outputs are all masked (``hw/engine/mask.py``).
    step_entries, tile_entries : int
        Scheduled commands (``hw/engine/step_list_sequencer.py``, the scheduler's format
        :mod:`sim.step_lists`): a step-index memory of ``step_entries`` entries and a tile
        table of ``tile_entries`` entries, written by the host, from which a command with
        ``scheduled`` runs each tile through its own list of steps and writes its lanes to
        their own columns. Both 0 (the default: no such memories) or both 1..65536; the
        engine must be output stationary with ``array.skip_zeros`` (a step left out is a
        product with a zero weight, which the zero gate skips too), without a lookahead
        window or output masks.
    """

    array: ArrayConfig = ArrayConfig()
    spad_width: int = 256
    a_rows: int = 256
    b_rows: int = 256
    acc_width: int = 256
    acc_rows: int = 256
    out_formats: tuple = ("fp32", "fp16", "e4m3", "e5m2")
    output_mask: bool = False
    step_entries: int = 0
    tile_entries: int = 0

    def __post_init__(self):
        if not isinstance(self.array, ArrayConfig):
            raise ValueError(f"array must be an ArrayConfig, not {self.array!r}")
        for name, banks in (("spad_width", max(self.a_banks, self.b_banks)),
                            ("acc_width", self.acc_banks)):
            value = getattr(self, name)
            _check_int(name, value, 16, 4096)
            if value & (value - 1) or value < banks:
                raise ValueError(f"{name} must be a power of two >= {banks}, not {value!r}")
        for name in ("a_rows", "b_rows", "acc_rows"):
            _check_int(name, getattr(self, name), 1, 65536)
        _check_formats("out_formats", self.out_formats, {"fp32", *STORE_FORMATS})
        if not isinstance(self.output_mask, bool):
            raise ValueError(f"output_mask must be a bool (True or False), not "
                             f"{self.output_mask!r}")
        if self.output_mask and self.array.dataflow != "os":
            raise ValueError(f"output_mask needs dataflow 'os', not {self.array.dataflow!r}")
        self._check_step_lists()

    def _check_step_lists(self):
        for name in ("step_entries", "tile_entries"):
            _check_int(name, getattr(self, name), 0, 65536)
        if (self.step_entries == 0) != (self.tile_entries == 0):
            raise ValueError(f"step_entries and tile_entries must both be 0 (no scheduled "
                             f"commands) or both 1..65536, not {self.step_entries} and "
                             f"{self.tile_entries}")
        if not self.step_lists:
            return
        if self.array.acc_interleave != 1:
            raise ValueError(f"step lists (step_entries > 0) need array.acc_interleave = 1, "
                             f"not {self.array.acc_interleave!r}: their sequencer issues one "
                             f"tile at a time")
        a = self.array
        needs = {"array.dataflow": (a.dataflow, "os"), "array.skip_zeros": (a.skip_zeros, True),
                 "array.skip_window": (a.skip_window, 1), "output_mask": (self.output_mask, False)}
        for name, (value, wanted) in needs.items():
            if value != wanted:
                raise ValueError(f"step lists (step_entries > 0) need {name} = {wanted!r}, "
                                 f"not {value!r}")

    @property
    def step_lists(self) -> bool:
        """The engine runs scheduled commands (``step_entries > 0``)."""
        return self.step_entries > 0

    @property
    def a_banks(self) -> int:
        """Banks of the A scratchpad: the next power of two >= rows (one lane per array row)."""
        return next_power_of_two(self.array.rows)

    @property
    def b_banks(self) -> int:
        return next_power_of_two(self.array.cols)

    @property
    def acc_banks(self) -> int:
        return next_power_of_two(self.array.cols)


@dataclasses.dataclass(frozen=True)
class AccelConfig:
    """The accelerator top level (``hw/accel``): a GEMM engine behind an AXI4-Lite register
    slave and an AXI4 DMA master (register map and DMA rules: :mod:`sim.accel_spec`).

    Parameters
    ----------
    engine : EngineConfig
    data_width : int
        Bits of the DMA's AXI4 data bus: 64, 128 or 256.
    addr_width : int
        Bits of the DMA's AXI4 addresses: 32 or 64.
    reads_outstanding : int
        Read bursts the DMA may have issued and not yet received (1..16).
    epilogue_stages : int
        Pipeline registers in each of the epilogue's FP32 multipliers and adders (0..3): 0
        computes a pass in two cycles, one per unit; ``s`` adds ``s`` cycles to each unit
        (``docs/accel.md``, "Epilogue"), for a shorter critical path (``docs/board.md``).
    """

    engine: EngineConfig = EngineConfig()
    data_width: int = 64
    addr_width: int = 32
    reads_outstanding: int = 4
    epilogue_stages: int = 0

    def __post_init__(self):
        from .accel_spec import ADDR_WIDTHS, DATA_WIDTHS

        if not isinstance(self.engine, EngineConfig):
            raise ValueError(f"engine must be an EngineConfig, not {self.engine!r}")
        if self.data_width not in DATA_WIDTHS:
            raise ValueError(f"data_width must be one of {', '.join(map(str, DATA_WIDTHS))}, "
                             f"not {self.data_width!r}")
        if self.addr_width not in ADDR_WIDTHS:
            raise ValueError(f"addr_width must be one of {', '.join(map(str, ADDR_WIDTHS))}, "
                             f"not {self.addr_width!r}")
        _check_int("reads_outstanding", self.reads_outstanding, 1, 16)
        _check_int("epilogue_stages", self.epilogue_stages, 0, 3)

    @property
    def beat_bytes(self) -> int:
        """Bytes per DMA beat."""
        return self.data_width // 8


#: The fast, small output-stationary PE (``ArrayConfig`` fields): three multiplier stages,
#: five outputs accumulated in rotation, operands decoded at the array's edge, the wide
#: multiplier only. On an ECP5 its 4x4 array clocks 4.8x the default PE's and its 8x8 array
#: fits the LFE5U-85F (``docs/engine.md``, "ECP5 maximum frequency"); it needs
#: ``skip_window = 1`` and no step lists, so it is not the default.
FAST_ARRAY = dict(mul_stages=3, acc_interleave=5, edge_decode=True, narrow_path=False)

PRESETS = {
    "4x4": EngineConfig(array=ArrayConfig(rows=4, cols=4)),
    "8x8": EngineConfig(),
    "16x16": EngineConfig(array=ArrayConfig(rows=16, cols=16), a_rows=512, b_rows=512,
                          acc_rows=512),
    "4x4-fast": EngineConfig(array=ArrayConfig(rows=4, cols=4, **FAST_ARRAY)),
    "8x8-fast": EngineConfig(array=ArrayConfig(**FAST_ARRAY)),
}


# -- configurations from files and flags -----------------------------------------------------------

def _from_fields(cls, data, path: str, **fixed):
    """``cls(**data)`` with unknown keys and field errors named by their path (``array.rows``)."""
    if not isinstance(data, dict):
        raise ValueError(f"{path or 'the configuration'} must be a table of "
                         f"{sorted(f.name for f in dataclasses.fields(cls))}, not {data!r}")
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - set(fixed))
    if unknown:
        raise ValueError(f"unknown configuration key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(path + key) for key in unknown)}; allowed: "
                         f"{', '.join(path + name for name in sorted(names))}")
    values = {key: tuple(value) if isinstance(value, list) else value
              for key, value in data.items()}
    try:
        return cls(**{**values, **fixed})
    except ValueError as exc:
        raise ValueError(f"{path}{exc}") from None


def engine_config_from(data: dict, base: EngineConfig | None = None) -> EngineConfig:
    """An :class:`EngineConfig` from plain data (a parsed TOML or JSON file, or flags).

    Top-level keys are :class:`EngineConfig` fields; ``array`` is a table of
    :class:`ArrayConfig` fields; ``preset`` names the configuration the others change (one of
    :data:`PRESETS`, default ``base`` or ``"8x8"``). Lists become tuples. Unknown keys and bad
    values raise ValueError naming the key (``array.rows must be an integer in 1..32, not
    0``) and the allowed keys or values.
    """
    data = dict(data)
    preset = data.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, not {preset!r}")
        base = PRESETS[preset]
    base = PRESETS["8x8"] if base is None else base
    array_data = data.pop("array", {})
    array = _from_fields(ArrayConfig, {**_plain(base.array), **_array_table(array_data)},
                         "array.")
    return _from_fields(EngineConfig, {**{k: v for k, v in _plain(base).items() if k != "array"},
                                       **data}, "", array=array)


def _array_table(data):
    if not isinstance(data, dict):
        raise ValueError(f"array must be a table of "
                         f"{sorted(f.name for f in dataclasses.fields(ArrayConfig))}, not {data!r}")
    return data


def _plain(config) -> dict:
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}


def config_to_dict(config: EngineConfig) -> dict:
    """Plain data of ``config`` (tuples as lists), the inverse of :func:`engine_config_from`."""
    return json_ready(dataclasses.asdict(config))


def json_ready(value):
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def accel_config_to_dict(config: AccelConfig) -> dict:
    """Plain data of an :class:`AccelConfig` (its engine as :func:`config_to_dict` gives it),
    the inverse of :func:`accel_config_from`."""
    return {**{field.name: getattr(config, field.name) for field in dataclasses.fields(config)
               if field.name != "engine"}, "engine": config_to_dict(config.engine)}


def accel_config_from(data: dict) -> AccelConfig:
    """An :class:`AccelConfig` from plain data: its bus fields and an ``engine`` table (as
    :func:`engine_config_from` takes it); unknown keys and bad values raise ValueError naming
    the key."""
    if not isinstance(data, dict):
        raise ValueError(f"an accelerator configuration must be a table, not {data!r}")
    data = dict(data)
    engine = engine_config_from(data.pop("engine", {}))
    return _from_fields(AccelConfig, data, "", engine=engine)


def load_engine_config(path) -> EngineConfig:
    """An :class:`EngineConfig` from a TOML file (see :func:`engine_config_from`)."""
    import tomllib
    from pathlib import Path

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return engine_config_from(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
