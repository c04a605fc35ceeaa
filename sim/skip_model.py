"""Cycle models of zero-skipping options for the output-stationary GEMM engine (a design study).

Every model works on the actual zero bitmaps of a command's operands (:class:`SparseGemm`) and
extends the dense engine's cycle model (:mod:`sim.engine_model`): the ``R x C`` array computes
``ceil(M/R) * ceil(N/C)`` output tiles in row-major order; array row ``r`` of a tile holds
output row ``m0 + r`` and its PEs share the A stream (``A[m0 + r, k]``), column ``c`` holds
output column ``n0 + c`` and its PEs share the B stream (``B[k, n0 + c]``). A tile that runs
for ``T`` cycles occupies ``max(T, min_tile_slots)`` issue slots (``min_tile_slots = 2R``: the
result shift-out of one tile must end before the next tile's swap), and a command takes the
sum of its tiles' slots plus the dense model's fixed ``overhead(accumulate)``. The dense option
gives exactly :func:`sim.engine_model.command_cycles` (tested).

Bits never depend on the option: every PE gates its accumulator update with "both operands
non-zero" (a zero flag travels with each operand) and the result path writes ``+0`` where the
output mask is 0, so every schedule below computes :func:`sim.sparsity.gemm_skip` exactly; each
PE still sees its products in ascending ``k``.

Options (:class:`SkipOption`), composable
-----------------------------------------
* **dense** (``schedule="dense"``): every tile runs ``K`` steps.
* **step skipping** (``schedule="steps"``): the loader's zero detect writes, per band of ``R``
  A rows and per step ``k``, "some row non-zero" and, per band of ``C`` B columns, "some column
  non-zero" (:func:`sim.sparsity.lane_bitmaps`); a step is *needed* in a tile when both bits are
  set (rows/columns whose outputs are all masked in the tile do not count). The sequencer scans
  the AND of the two bitmaps ``scan_width`` bits at a time and issues only needed steps: the
  tile's cycles are those of the lookahead window below with one lane and depth
  ``scan_width`` (an all-unneeded word of the bitmap costs one cycle). No PE changes.
* **lookahead** (``schedule="lookahead"``, TensorDash-like, depth ``d``): on ``side="a"`` each
  array row chooses its own step within a window of ``d`` steps; the B rows of the whole window
  flow down the columns (``d`` B operands per PE, a ``d:1`` operand mux per PE selected by a
  ``log2 d``-bit index that travels with the row's A value). Precisely, per tile, with ``need[r,
  k]`` = "A[m0+r, k] non-zero, row r has a kept output in the tile, and the B band is not all
  zero at k", and ``L`` steps (``K``, or the number of needed steps with ``over_needed_steps``,
  the window then sliding over the needed-step list of the step-skipping bitmaps)::

      b = 0; next[r] = first k with need[r, k] (L if none)
      while b < L:                                   # one cycle
          for every row r with next[r] < b + d:      # row r issues step next[r]
              next[r] = following k with need[r, k] (L if none)
          b = min(b + f, min over r of next[r])

  ``d = 1`` is dense (``L = K``) or step skipping (``L`` = needed steps). The window passes at
  most ``f <= d`` steps per cycle (``fetch``, default ``d``): the scratchpads deliver up to
  ``f`` steps (A columns and B rows) per cycle. ``side="b"`` is the mirror (columns choose by
  their B zeros, the A windows flow along the rows); on a square array it equals side a on the
  GEMM with A and B exchanged (``C^T = B^T A^T``), which is how a compiler uses side-a
  hardware for it. ``side="pe"``: every PE ``(r, c)`` is a lane and chooses by ``A[m0+r, k]``
  and ``B[k, n0+c]`` non-zero and its output kept; both windows flow through the PEs.
* **empty tiles** (``skip_empty_tiles``): a tile without a needed step is not run at all (its
  outputs are ``C_in``, ``+0``, or masked): 0 slots. The accumulator memory keeps a row-clear
  flag per tile row that reads as ``+0`` (overwrite) so nothing needs writing.
* **lane compaction** (``compact_lanes``): before tiling, the loader drops the rows of A that are
  all zero or whose outputs are all masked, and the columns of B likewise (zero detect and the
  mask give both as the operands are loaded); the result rows are written back through a
  row-index list (and cleared rows flagged as above). Output skipping of backward data
  (``out_keep``) acts through this and through the rows/columns of a tile. :func:`compact`
  gives the same compaction as a host step: the compacted GEMM (without ``out_keep``) and the
  kept row and column indices for the host's result scatter.
* **row reordering** (``reorder_rows``): the scheduler (host) permutes the output rows so that
  rows with similar zero patterns share tiles (:func:`reorder_rows`), which makes whole steps
  skippable; im2col and the result scatter already run on the host, so the permutation costs no
  hardware; accumulation order per output is unchanged.

:func:`skip_area` states each option's hardware assumptions as cell counts (before RTL).

Pure Python and numpy; no Amaranth here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import EngineConfig
from .engine_model import EngineCommand, EngineTiming, OutputStationaryEngineTiming
from .sparsity import check_mask, lane_bitmaps, nonzero_macs, zero_bitmap

__all__ = ["MAX_DEPTH", "SCHEDULES", "SIDES", "SkipOption", "DENSE", "SparseGemm",
           "window_cycles", "reorder_rows", "compact", "command_cycles", "tile_cycles",
           "issued_products",
           "tile_bound_cycles", "ideal_cycles", "skip_area", "PE_CELLS", "OPERAND_BITS",
           "SCRATCHPAD_LOGIC_CELLS"]

#: Deepest lookahead window modelled.
MAX_DEPTH = 8
SCHEDULES = ("dense", "steps", "lookahead")
SIDES = ("a", "b", "pe")
# window_cycles handles tiles in chunks of at most this many (lane, step) entries
_CHUNK_ENTRIES = 1 << 22
#: Generic cells of one output-stationary PE, full operand formats (docs/engine.md).
PE_CELLS = 2846
#: Bits of an operand as it moves through the array with a zero flag: 16-bit word, 2-bit format
#: tag, zero flag.
OPERAND_BITS = 19
#: Logic cells (memories excluded) of one 8-lane skewed scratchpad (docs/engine.md).
SCRATCHPAD_LOGIC_CELLS = 1654


def _check_bool(value, field):
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be a bool, not {value!r}")


def _check_int(value, field, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer in {low}..{high}, not {value!r}")


@dataclasses.dataclass(frozen=True)
class SkipOption:
    """One skipping design (see the module docstring); validated on construction.

    Parameters
    ----------
    name : str
    schedule : str
        ``"dense"``, ``"steps"`` or ``"lookahead"``.
    depth : int
        Lookahead window, 1..:data:`MAX_DEPTH` (1 unless ``schedule="lookahead"``).
    side : str
        Who chooses the steps in a lookahead window: ``"a"``, the array rows (by their A
        zeros); ``"b"``, the columns (by their B zeros); ``"pe"``, every PE (by both).
    over_needed_steps : bool
        The lookahead window slides over the tile's needed steps (step bitmaps applied first).
    fetch : int or None
        Steps the operand windows can advance per cycle (scratchpad read bandwidth),
        1..``depth``; None: ``depth``.
    scan_width : int
        Bits of the step bitmap the sequencer scans per cycle (``"steps"``), 1..1024.
    skip_empty_tiles, compact_lanes, reorder_rows : bool
    """

    name: str
    schedule: str = "dense"
    depth: int = 1
    side: str = "a"
    over_needed_steps: bool = False
    fetch: int | None = None
    scan_width: int = 64
    skip_empty_tiles: bool = False
    compact_lanes: bool = False
    reorder_rows: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, not {self.schedule!r}")
        _check_int(self.depth, "depth", 1, MAX_DEPTH)
        if self.depth != 1 and self.schedule != "lookahead":
            raise ValueError(f"depth must be 1 unless schedule is 'lookahead', not {self.depth}")
        if self.fetch is not None:
            _check_int(self.fetch, "fetch", 1, self.depth)
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {list(SIDES)}, not {self.side!r}")
        _check_int(self.scan_width, "scan_width", 1, 1024)
        for field in ("over_needed_steps", "skip_empty_tiles", "compact_lanes", "reorder_rows"):
            _check_bool(getattr(self, field), field)
        if self.over_needed_steps and self.schedule != "lookahead":
            raise ValueError("over_needed_steps needs schedule 'lookahead'")

    @property
    def skips(self) -> bool:
        """Something is skipped (the PEs need their zero gates)."""
        return (self.schedule != "dense" or self.skip_empty_tiles or self.compact_lanes
                or self.reorder_rows)

    @property
    def uses_step_bitmaps(self) -> bool:
        """The sequencer reads the per-band step bitmaps."""
        return self.schedule == "steps" or self.over_needed_steps or self.skip_empty_tiles

    @property
    def advance(self) -> int:
        """Most steps the window passes per cycle."""
        return self.depth if self.fetch is None else self.fetch


#: The dense engine.
DENSE = SkipOption(name="dense")


def _bool_matrix(array, field):
    array = np.asarray(array)
    if array.dtype != np.bool_ or array.ndim != 2:
        raise ValueError(f"{field} must be a 2-D boolean array, not {array.dtype} of shape "
                         f"{array.shape}")
    return array


@dataclasses.dataclass(frozen=True, eq=False)
class SparseGemm:
    """A GEMM command as the skip models see it: non-zero bitmaps of its operands *as read*.

    Parameters
    ----------
    a_nonzero : bool array (M, K)
    b_nonzero : bool array (K, N)
    out_keep : bool array (M, N) or None
        Output keep mask (backward data: the forward mask of the layer's input); None: all.
    accumulate : bool
        The command starts from ``C_old`` (affects the fixed overhead only).
    """

    a_nonzero: np.ndarray
    b_nonzero: np.ndarray
    out_keep: np.ndarray | None = None
    accumulate: bool = False

    def __post_init__(self):
        a = _bool_matrix(self.a_nonzero, "a_nonzero")
        b = _bool_matrix(self.b_nonzero, "b_nonzero")
        if a.shape[1] != b.shape[0]:
            raise ValueError(f"inner dimensions differ: a_nonzero is {a.shape}, b_nonzero is "
                             f"{b.shape}")
        if min(a.shape + b.shape) < 1:
            raise ValueError(f"M, N and K must be at least 1, not {a.shape} x {b.shape}")
        if self.out_keep is not None:
            object.__setattr__(self, "out_keep",
                               check_mask(self.out_keep, (a.shape[0], b.shape[1]), "out_keep"))
        _check_bool(self.accumulate, "accumulate")

    @classmethod
    def from_bits(cls, a_bits, b_bits, *, a_fmt="fp16", b_fmt="fp16", transpose_a=False,
                  transpose_b=False, out_mask=None, accumulate=False) -> SparseGemm:
        """From stored operands, with the conventions of :func:`sim.gemm.gemm`."""
        _check_bool(transpose_a, "transpose_a")
        _check_bool(transpose_b, "transpose_b")
        a = ~zero_bitmap(a_bits, a_fmt, field="a")
        b = ~zero_bitmap(b_bits, b_fmt, field="b")
        return cls(a_nonzero=a.T if transpose_a else a, b_nonzero=b.T if transpose_b else b,
                   out_keep=out_mask, accumulate=accumulate)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, N, K)``."""
        return self.a_nonzero.shape[0], self.b_nonzero.shape[1], self.a_nonzero.shape[1]

    def command(self, *, a_transpose: bool = False, b_transpose: bool = False) -> EngineCommand:
        """The dense engine command of this shape, operands stored as the flags say (for
        :func:`sim.engine_model.command_cycles`; its memory positions are 0: use a
        configuration whose memories hold it)."""
        m, n, k = self.shape
        return EngineCommand(m=m, n=n, k=k, a_transpose=a_transpose, b_transpose=b_transpose,
                             accumulate=self.accumulate)

    @property
    def nonzero_macs(self) -> int:
        """Products with both operands non-zero and a kept output."""
        return nonzero_macs(self.a_nonzero, self.b_nonzero, self.out_keep)


def _os_timing(config) -> OutputStationaryEngineTiming:
    if not isinstance(config, EngineConfig):
        raise ValueError(f"config must be an EngineConfig, not {config!r}")
    if config.array.dataflow != "os":
        raise ValueError(f"config.array.dataflow must be 'os' for the skip models, not "
                         f"{config.array.dataflow!r}")
    return EngineTiming.of(config)


def _check_option(option):
    if not isinstance(option, SkipOption):
        raise ValueError(f"option must be a SkipOption, not {option!r}")


def window_cycles(lanes, *, depth: int, lengths=None, fetch: int | None = None) -> np.ndarray:
    """Cycles of the lookahead window (module docstring) for a batch of tiles.

    Parameters
    ----------
    lanes : bool array (tiles, lanes, L)
        ``need`` of each lane of each tile at each step (position in the window's list).
    depth : int
        Window depth ``d`` >= 1.
    fetch : int, optional
        Most steps the window passes per cycle, 1..``depth`` (default ``depth``).
    lengths : int array (tiles,), optional
        Steps of each tile's list (default ``L``); positions at or past it must be False.

    Returns
    -------
    int64 array (tiles,)
    """
    lanes = np.asarray(lanes)
    if lanes.dtype != np.bool_ or lanes.ndim != 3:
        raise ValueError(f"lanes must be a 3-D boolean array, not {lanes.dtype} of shape "
                         f"{lanes.shape}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, not {depth!r}")
    if fetch is None:
        fetch = depth
    _check_int(fetch, "fetch", 1, depth)
    tiles, count, steps = lanes.shape
    lengths = np.full(tiles, steps, dtype=np.int64) if lengths is None else \
        np.asarray(lengths, dtype=np.int64)
    if lengths.shape != (tiles,) or (lengths < 0).any() or (lengths > steps).any():
        raise ValueError(f"lengths must be {tiles} integers in 0..{steps}")
    cycles = np.zeros(tiles, dtype=np.int64)
    if tiles == 0 or count == 0:
        return cycles
    chunk = max(1, _CHUNK_ENTRIES // (count * (steps + 1)))
    for start in range(0, tiles, chunk):
        part = slice(start, start + chunk)
        cycles[part] = _window(lanes[part], depth, fetch, lengths[part])
    return cycles


def _window(lanes, depth, fetch, lengths):
    tiles, count, steps = lanes.shape
    cycles = np.zeros(tiles, dtype=np.int64)
    # nxt[t, l, j]: first position >= j the lane needs (steps if none), j = 0 .. steps
    positions = np.where(lanes, np.arange(steps, dtype=np.int64), steps)
    nxt = np.full((tiles, count, steps + 1), steps, dtype=np.int64)
    nxt[..., :steps] = np.minimum.accumulate(positions[..., ::-1], axis=-1)[..., ::-1]
    flat = nxt.reshape(-1)
    row_base = (np.arange(tiles * count, dtype=np.int64) * (steps + 1)).reshape(tiles, count)
    live = np.flatnonzero(lengths > 0)
    base = np.zeros(tiles, dtype=np.int64)
    pos = nxt[..., 0].copy()
    while live.size:
        p, b = pos[live], base[live]
        issue = p < (b + depth)[:, None]
        following = flat[row_base[live] + np.minimum(p + 1, steps)]
        p = np.where(issue, following, p)
        pos[live] = p
        base[live] = np.minimum(b + fetch, p.min(axis=1))
        cycles[live] += 1
        live = live[base[live] < lengths[live]]
    return cycles


def reorder_rows(a_nonzero, *, lanes: int) -> np.ndarray:
    """Row order the scheduler gives the output rows: rows with similar A zero patterns next
    to each other, so that bands of ``lanes`` rows share their zero steps.

    The heuristic: all-zero rows first, then the rows sorted lexicographically by their
    non-zero bitmap with the steps taken from the most to the least often non-zero (rows
    that share their frequent non-zeros share bands). Returns a permutation of the rows.
    """
    a_nonzero = _bool_matrix(a_nonzero, "a_nonzero")
    _check_int(lanes, "lanes", 1, 1 << 16)
    frequency = a_nonzero.sum(axis=0)
    step_order = np.argsort(-frequency, kind="stable")
    # big-endian packing: comparing the bytes compares the bitmaps lexicographically, and an
    # all-zero row is the smallest
    packed = np.packbits(a_nonzero[:, step_order], axis=1)
    keys = [row.tobytes() for row in packed]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def _kept_lanes(a, b, keep):
    """Lane compaction's boolean masks: the rows of A that are not all zero and have a kept
    output, the columns of B likewise."""
    kept_rows, kept_cols = a.any(axis=1), b.any(axis=0)
    if keep is not None:
        kept_rows &= keep.any(axis=1)
        kept_cols &= keep.any(axis=0)
    return kept_rows, kept_cols


def compact(gemm: SparseGemm) -> tuple[SparseGemm | None, np.ndarray, np.ndarray]:
    """Lane compaction done by the host before it issues ``gemm`` (no hardware needed).

    Drops the rows of A that are all zero or whose outputs are all masked (``out_keep`` row all
    False), and the columns of B likewise; the engine computes the remaining sub-GEMM with no
    output mask (``out_keep=None``, same ``accumulate``). The host's result scatter writes the
    rest: dropped all-zero rows/columns keep ``C_in`` (accumulate) or get ``+0``, masked
    outputs get ``+0`` (including masked outputs inside the kept rows and columns, which the
    engine computes and the scatter overwrites). This is the compaction of
    ``SkipOption(compact_lanes=True)``: on a GEMM without ``out_keep``,
    ``tile_cycles(config, compact(gemm)[0], option)`` equals ``tile_cycles(config, gemm,
    replace(option, compact_lanes=True))``.

    Parameters
    ----------
    gemm : SparseGemm

    Returns
    -------
    compacted : SparseGemm or None
        The GEMM the engine runs; None when no row or no column is left (nothing is issued:
        the command costs 0 engine cycles, the host writes every output).
    rows, cols : int64 arrays
        Indices of the kept rows of A (= rows of C) and columns of B (= columns of C), ascending;
        the engine's result ``i, j`` is ``C[rows[i], cols[j]]``. Each is computed on its own
        (a row with work is listed even when no column is left).
    """
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    kept_rows, kept_cols = _kept_lanes(gemm.a_nonzero, gemm.b_nonzero, gemm.out_keep)
    rows, cols = np.flatnonzero(kept_rows), np.flatnonzero(kept_cols)
    if rows.size == 0 or cols.size == 0:
        return None, rows, cols
    compacted = SparseGemm(a_nonzero=gemm.a_nonzero[rows], b_nonzero=gemm.b_nonzero[:, cols],
                           accumulate=gemm.accumulate)
    return compacted, rows, cols


def _keep_blocks(keep, m, n, rows, cols, bands, groups):
    """``(bands, groups, rows, cols)`` output keep mask per tile (padding never kept)."""
    padded = np.zeros((bands * rows, groups * cols), dtype=np.bool_)
    padded[:m, :n] = True if keep is None else keep
    return padded.reshape(bands, rows, groups, cols).transpose(0, 2, 1, 3)


def _keep_tiles(keep, m, n, rows, cols, bands, groups):
    """``(bands, groups, rows)`` rows and ``(bands, groups, cols)`` columns that have a kept
    output in each tile (padding never)."""
    blocks = _keep_blocks(keep, m, n, rows, cols, bands, groups)
    return blocks.any(axis=3), blocks.any(axis=2)


def tile_cycles(config, gemm: SparseGemm, option: SkipOption = DENSE) -> np.ndarray:
    """Cycles each tile runs for under ``option`` (before the ``min_tile_slots`` floor), in
    tile order; -1 for a tile that is not run (``skip_empty_tiles``). Lane compaction and
    reordering are applied first, so the tiles are those of the compacted/reordered GEMM."""
    timing = _os_timing(config)
    _check_option(option)
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    rows, cols = timing.rows, timing.cols
    a, b, keep = gemm.a_nonzero, gemm.b_nonzero, gemm.out_keep
    if option.reorder_rows:
        order = reorder_rows(a, lanes=rows)
        a = a[order]
        keep = None if keep is None else keep[order]
    if option.compact_lanes:
        kept_rows, kept_cols = _kept_lanes(a, b, keep)
        a, b = a[kept_rows], b[:, kept_cols]
        keep = None if keep is None else keep[np.ix_(kept_rows, kept_cols)]
    m, k = a.shape
    n = b.shape[1]
    bands, groups = math.ceil(m / rows), math.ceil(n / cols)
    if bands * groups == 0:
        return np.zeros(0, dtype=np.int64)
    if option.schedule == "dense" and not option.skip_empty_tiles:
        return np.full(bands * groups, k, dtype=np.int64)
    a_bands, _ = lane_bitmaps(a, lanes=rows)             # (bands, R, K)
    b_bands, _ = lane_bitmaps(b.T, lanes=cols)           # (groups, C, K)
    row_keep, col_keep = _keep_tiles(keep, m, n, rows, cols, bands, groups)
    a_lanes = a_bands[:, None] & row_keep[..., None]     # (bands, groups, R, K)
    b_lanes = b_bands[None] & col_keep[..., None]        # (bands, groups, C, K)
    a_any, b_any = a_lanes.any(axis=2), b_lanes.any(axis=2)
    needed = (a_any & b_any).reshape(bands * groups, k)
    if option.schedule == "dense":
        cycles = np.full(bands * groups, k, dtype=np.int64)
    elif option.schedule == "steps":
        cycles = window_cycles(needed[:, None, :], depth=option.scan_width)
    else:
        if option.side == "a":
            lanes = a_lanes & b_any[:, :, None, :]
        elif option.side == "b":
            lanes = b_lanes & a_any[:, :, None, :]
        else:       # every PE (r, c): A and B non-zero and its output kept
            lanes = a_lanes[:, :, :, None, :] & b_lanes[:, :, None, :, :]
            if keep is not None:
                lanes &= _keep_blocks(keep, m, n, rows, cols, bands, groups)[..., None]
            lanes = lanes.reshape(bands, groups, rows * cols, k)
        lanes = lanes.reshape(bands * groups, lanes.shape[2], k)
        lengths = None
        if option.over_needed_steps:
            order = np.argsort(~needed, axis=1, kind="stable")   # needed steps first, in order
            lanes = np.take_along_axis(lanes, order[:, None, :], axis=2)
            lengths = needed.sum(axis=1)
        cycles = window_cycles(lanes, depth=option.depth, lengths=lengths, fetch=option.advance)
    if option.skip_empty_tiles:
        cycles = np.where(needed.any(axis=1), cycles, -1)
    return cycles


def issued_products(config, gemm: SparseGemm, depth: int) -> int:
    """Products with both operands non-zero that reach the PEs of an array with the zero gate,
    over a whole GEMM (no compaction, no reordering): the products its PEs accumulate.

    With ``depth = 1`` (the dense schedule) every step reaches every PE, so that is every
    product with two non-zero operands. With a lookahead window (``depth >= 2``, side a) array
    row ``r`` of a tile takes exactly its needed steps (``A[m0 + r, k]`` non-zero, the row
    having a kept output in the tile, and some ``B[k, n0 + c]`` of a column with a kept output
    non-zero), and each PE of the row multiplies its own ``B[k, n0 + c]``: a column whose
    outputs are all masked still computes the steps its row takes for the other columns.
    Lanes outside the matrix hold ``+0``.
    """
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    a, b = gemm.a_nonzero, gemm.b_nonzero
    if depth == 1:      # any dataflow: every step reaches every PE
        return int((a.sum(axis=0, dtype=np.int64) * b.sum(axis=1, dtype=np.int64)).sum())
    timing = _os_timing(config)
    rows, cols = timing.rows, timing.cols
    (m, k), n = a.shape, b.shape[1]
    bands, groups = math.ceil(m / rows), math.ceil(n / cols)
    if bands * groups * k == 0:
        return 0
    a_bands, _ = lane_bitmaps(a, lanes=rows)             # (bands, R, K)
    b_bands, _ = lane_bitmaps(b.T, lanes=cols)           # (groups, C, K)
    row_keep, col_keep = _keep_tiles(gemm.out_keep, m, n, rows, cols, bands, groups)
    b_any = (b_bands[None] & col_keep[..., None]).any(axis=2)          # (bands, groups, K)
    issued = a_bands[:, None] & row_keep[..., None] & b_any[:, :, None, :]
    per_step = b_bands.sum(axis=1, dtype=np.int64)                     # (groups, K)
    return int((issued.sum(axis=2, dtype=np.int64) * per_step[None]).sum())


def command_cycles(config, gemm: SparseGemm, option: SkipOption = DENSE) -> int:
    """Cycles from accept to ``done`` of ``gemm`` on the OS engine of ``config`` with
    ``option``: the tiles' ``max(T, min_tile_slots)`` slots plus the dense model's overhead
    (memory sizes are not checked: use a configuration whose memories hold the command)."""
    timing = _os_timing(config)
    cycles = tile_cycles(config, gemm, option)
    run = cycles[cycles >= 0]
    slots = int(np.maximum(run, timing.min_tile_slots).sum())
    return slots + timing.overhead(gemm.accumulate)


def tile_bound_cycles(config, gemm: SparseGemm) -> int:
    """A lower bound for every option with lane compaction and the natural row order: after
    lane compaction, each tile with work takes at least ``max(min_tile_slots, the largest number of
    needed products of one of its PEs)`` (a PE does one MAC per cycle) and empty tiles take
    nothing; plus the fixed overhead. The gap from :func:`ideal_cycles` to this bound is the
    cost of the tiling (tile floor, PEs of a tile with unequal work, idle lanes of edge tiles);
    the gap from this bound to an option is the cost of its window."""
    timing = _os_timing(config)
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    a, b, keep = gemm.a_nonzero, gemm.b_nonzero, gemm.out_keep
    kept_rows, kept_cols = _kept_lanes(a, b, keep)
    if keep is not None:
        keep = keep[np.ix_(kept_rows, kept_cols)]
    a, b = a[kept_rows], b[:, kept_cols]
    work = a.astype(np.float64) @ b.astype(np.float64)        # needed products of each PE
    if keep is not None:
        work = np.where(keep, work, 0.0)
    m, n = work.shape
    rows, cols = timing.rows, timing.cols
    bands, groups = math.ceil(m / rows), math.ceil(n / cols)
    padded = np.zeros((bands * rows, groups * cols))
    padded[:m, :n] = work
    busiest = padded.reshape(bands, rows, groups, cols).max(axis=(1, 3))
    slots = np.where(busiest > 0, np.maximum(busiest, timing.min_tile_slots), 0)
    return int(round(float(slots.sum()))) + timing.overhead(gemm.accumulate)


def ideal_cycles(config, gemm: SparseGemm) -> int:
    """``ceil(non-zero MACs / (R * C))``: every PE busy with a needed product every cycle."""
    timing = _os_timing(config)
    if not isinstance(gemm, SparseGemm):
        raise ValueError(f"gemm must be a SparseGemm, not {gemm!r}")
    return math.ceil(gemm.nonzero_macs / (timing.rows * timing.cols))


def skip_area(option: SkipOption, config) -> dict:
    """Estimated extra generic cells of ``option`` over the dense engine (before any RTL).

    Assumptions (cells counted like Yosys generic cells, one per flip-flop bit; a ``d:1`` mux
    of ``w`` bits ~ ``w * (d - 1)`` cells; memories are not cells):

    * any skipping option: zero flag per operand in the PE pipeline registers (2 FF) and the
      gate on the accumulator update (~4 cells) per PE; a zero detector per scratchpad read
      lane (a 15-input NOR, ~15 cells) on the ``R + C`` lanes; the output-mask AND on the
      result row (32 cells per column);
    * step bitmaps (steps, empty tiles, needed-step windows): bitmap memories (one bit per band
      and step; memory), their update at write (~2 cells per lane) and the sequencer's scanner:
      a ``scan_width``-bit find-first-set and step counter (~4 cells per bit + 64);
    * lookahead of depth ``d`` on side a: per PE ``(d - 1)`` more B operand registers
      (``OPERAND_BITS`` FF each), a ``d:1`` mux and a ``ceil(log2 d)``-bit select register; per
      array row a ``d``-deep A window (``d * OPERAND_BITS`` FF), its ``d:1`` mux and a chooser
      (~12 cells per window slot); per column the ``d``-deep B window at the top edge (side b:
      the mirror). Side ``pe``: both windows pass through every PE (``2 (d - 1)`` more operand
      registers), two ``d:1`` muxes and a chooser per PE. The scratchpads read ``d`` steps per
      cycle: their read logic (``SCRATCHPAD_LOGIC_CELLS`` per scratchpad) is counted ``f``
      times (reported separately as ``outside_array``; their memories, not cells, are ``f``
      times as many banks, or copies when the window slides over needed steps);
    * lane compaction, reordering: a row-index list for the result writes (``R`` 16-bit
      registers and a counter, ~300 cells) and a row-clear flag memory (memory).

    Returns a dict with ``array_cells`` (the dense PEs), ``in_array`` (PE and edge additions),
    ``sequencer``, ``outside_array`` (scratchpad read paths), ``total`` and ``fraction``
    (``total / array_cells``).
    """
    _check_option(option)
    timing = _os_timing(config)
    rows, cols = timing.rows, timing.cols
    pes = rows * cols
    array_cells = pes * PE_CELLS
    in_array = sequencer = outside = 0
    if option.skips:
        in_array += pes * (2 + 4)
        sequencer += 15 * (rows + cols) + 32 * cols
    if option.uses_step_bitmaps:
        scan = option.scan_width if option.schedule == "steps" else max(option.depth, 64)
        sequencer += 2 * (rows + cols) + 4 * scan + 64
    if option.schedule == "lookahead" and option.depth > 1:
        d = option.depth
        window = d * OPERAND_BITS                      # FF of a d-deep operand window
        mux = OPERAND_BITS * (d - 1)                   # d:1 operand mux
        if option.side == "pe":
            # both windows travel through every PE; each PE chooses and muxes both operands
            in_array += pes * (2 * (window - OPERAND_BITS) + 2 * mux + 12 * d)
            in_array += (rows + cols) * window
        else:
            choosers, carriers = (rows, cols) if option.side == "a" else (cols, rows)
            select_bits = math.ceil(math.log2(d))
            # the other operand's window travels through every PE, muxed there by the index
            # that travels with the chooser's operand
            in_array += pes * ((window - OPERAND_BITS) + mux + select_bits)
            in_array += choosers * (window + mux + 12 * d)
            in_array += carriers * window
        outside += 2 * (option.advance - 1) * SCRATCHPAD_LOGIC_CELLS
    if option.compact_lanes or option.reorder_rows:
        sequencer += 300
    total = in_array + sequencer + outside
    return {"array_cells": array_cells, "in_array": in_array, "sequencer": sequencer,
            "outside_array": outside, "total": total, "fraction": total / array_cells}
