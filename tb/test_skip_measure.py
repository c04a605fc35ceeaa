"""The measurement of the zero-skipping RTL design (:mod:`sim.experiments.skip`, run by
``scripts/skip_measure.py``) on small random
GEMMs: the dense variant is the engine model, depth 1 without compaction is dense, host
compaction never slows depth 1 down and costs 0 cycles when nothing is left, the swap is the
side-b window of the compacted GEMM, every compacted variant sits between the tile bound and
dense; headline entries, merging into existing results and the generated report.

Plain pytest, no simulator; a few seconds.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from scripts import skip_measure
from sim.experiments import skip
from sim.experiments.skip import (DEFAULT, HEADLINE_FIELDS, VARIANT_NAMES, VARIANTS, Variant,
                                  area_overheads, headline, measure_gemm, measurement_section,
                                  totals)
from sim.experiments.sparsity import timing_config
from sim.engine_model import EngineCommand
from sim.engine_model import command_cycles as engine_cycles
from sim.skip_timing import engine_cycles as window_engine_cycles
from sim.skip_model import SkipOption, SparseGemm, command_cycles, compact
from sim.skip_timing import lookahead_latency, with_window

SEED = int(os.environ.get("SPARTA_SEED", "5"))
KINDS = ("forward", "weight_grad", "backward_data")


def random_gemm(rng, m, n, k, density, keep_density=None, accumulate=False):
    a = rng.random((m, k)) < density
    b = rng.random((k, n)) < density
    a[:8] = False                             # all-zero lanes: one band and one column
    b[:, -8:] = False                         # group fewer after compaction
    a[rng.random(m) < 0.2] = False
    b[:, rng.random(n) < 0.2] = False
    keep = None if keep_density is None else rng.random((m, n)) < keep_density
    if keep is not None:
        keep[rng.random(m) < 0.2] = False     # fully masked rows
    return SparseGemm(a_nonzero=a, b_nonzero=b, out_keep=keep, accumulate=accumulate)


def cases():
    rng = np.random.default_rng([SEED, 61])
    for kind in KINDS:
        for m, n, k, density in ((40, 24, 70, 0.3), (17, 30, 9, 0.6), (9, 70, 130, 0.1)):
            keep = 0.6 if kind == "backward_data" else None
            yield kind, random_gemm(rng, m, n, k, density, keep, accumulate=(m == 17))


CASES = list(cases())


def test_variants_and_default():
    assert DEFAULT in VARIANT_NAMES
    assert len(set(VARIANT_NAMES)) == len(VARIANT_NAMES) == 17
    assert {v.name for v in VARIANTS if v.depth == 1} == {"dense", "compact"}
    option = Variant("x", depth=3).option
    assert (option.schedule, option.depth, option.advance, option.side) == \
        ("lookahead", 3, 3, "a")
    assert not (option.compact_lanes or option.skip_empty_tiles or option.over_needed_steps)


@pytest.mark.parametrize("index", range(len(CASES)))
def test_measure_gemm(index):
    kind, gemm = CASES[index]
    config = timing_config()
    m, n, k = gemm.shape
    row = measure_gemm(config, gemm, kind)
    cycles = row["cycles"]
    assert set(cycles) == set(VARIANT_NAMES)
    dense = engine_cycles(config, EngineCommand(m=m, n=n, k=k, accumulate=gemm.accumulate))
    assert cycles["dense"] == dense
    assert cycles["compact"] <= dense
    compacted, rows, cols = compact(gemm)
    assert (row["kept_rows"], row["kept_cols"]) == (rows.size, cols.size)
    assert rows.size < m and cols.size < n
    assert cycles["compact"] < dense                     # fewer tiles
    swapped = SparseGemm(a_nonzero=gemm.b_nonzero.T, b_nonzero=gemm.a_nonzero.T,
                         accumulate=gemm.accumulate)
    # the window engine: the window model plus the flag-read latency of every command
    latency = lookahead_latency(with_window(config, 2), gemm.accumulate)
    wait = (lookahead_latency(with_window(config, 2), gemm.accumulate, True) - latency)
    for d in (2, 3, 4):
        window = SkipOption("w", schedule="lookahead", depth=d)
        assert cycles[f"la{d}"] == latency + command_cycles(
            config, dataclasses.replace(gemm, out_keep=None), window)
        assert cycles[f"la{d}"] <= dense
        assert cycles[f"la{d}_compact"] == latency + command_cycles(config, compacted, window)
        if kind == "weight_grad":    # the swap is the side-b window on the compacted GEMM
            side_b = dataclasses.replace(window, side="b")
            assert cycles[f"la{d}_compact_swap"] == latency + command_cycles(config, compacted,
                                                                             side_b)
            assert cycles[f"la{d}_compact_swap"] == latency + command_cycles(
                config, compact(swapped)[0], window)
        else:
            assert cycles[f"la{d}_compact_swap"] == cycles[f"la{d}_compact"]
        if gemm.out_keep is None or kind != "backward_data":    # nothing for masks to read
            assert cycles[f"la{d}_mask"] == cycles[f"la{d}"]
            assert cycles[f"la{d}_compact_swap_mask"] == cycles[f"la{d}_compact_swap"]
        else:       # the engine reads the mask: its own latency, the window model with it
            masked = with_window(dataclasses.replace(config, output_mask=True), d)
            assert cycles[f"la{d}_mask"] == window_engine_cycles(masked, EngineCommand(
                m=m, n=n, k=k, accumulate=gemm.accumulate, mask_host=True), gemm)
            # a mask only removes work; the first tile waits for its summary
            assert cycles[f"la{d}_mask"] <= cycles[f"la{d}"] + wait
    for name in VARIANT_NAMES:
        if "compact" in name:
            assert row["ideal"] <= row["tile_bound"] <= cycles[name], name
        # a masked command may cost its summary wait more than the dense engine
        slack = wait if name.endswith("_mask") and gemm.out_keep is not None \
            and kind == "backward_data" else 0
        assert row["ideal"] <= cycles[name] <= dense + slack, name
    assert [cycles[f"la{d}"] for d in (2, 3, 4)] == sorted(
        (cycles[f"la{d}"] for d in (2, 3, 4)), reverse=True)
    assert row["nonzero_macs"] == gemm.nonzero_macs
    assert row["mac_sparsity"] == pytest.approx(1 - gemm.nonzero_macs / (m * n * k))
    if gemm.out_keep is None:
        assert row["masked_out"] is None
    else:
        assert row["masked_out"] == pytest.approx(1 - gemm.out_keep.mean())


def test_window_without_output_mask_input():
    """Without output masks the engine ignores the mask: a variant without compaction costs
    the same whatever the mask, and compaction acts only on fully masked rows and columns;
    with them, a masked tile band costs nothing but the window's floor."""
    rng = np.random.default_rng([SEED, 67])
    config = timing_config()
    gemm = random_gemm(rng, 40, 32, 60, 0.3)
    keep = rng.random((40, 32)) < 0.5
    masked = dataclasses.replace(gemm, out_keep=keep)
    plain = measure_gemm(config, gemm, "backward_data")["cycles"]
    with_mask = measure_gemm(config, masked, "backward_data")["cycles"]
    assert plain["la4"] == with_mask["la4"]
    assert plain["la4_compact"] == with_mask["la4_compact"]     # no row or column fully masked
    keep[:, :16] = False
    fewer = measure_gemm(config, dataclasses.replace(gemm, out_keep=keep),
                         "backward_data")["cycles"]
    assert fewer["la4"] == plain["la4"]
    assert fewer["la4_compact"] < plain["la4_compact"]
    # output masks: the first 16 columns (two tile columns of 8) need nothing
    assert fewer["la4_mask"] < fewer["la4"]
    assert with_mask["la4_mask"] >= plain["la4"]          # no whole row or column masked


def test_compacted_away_command_costs_nothing():
    config = timing_config()
    empty = SparseGemm(a_nonzero=np.zeros((20, 30), bool), b_nonzero=np.ones((30, 12), bool))
    row = measure_gemm(config, empty, "weight_grad")
    dense = row["cycles"]["dense"]
    assert dense == engine_cycles(config, EngineCommand(m=20, n=12, k=30))
    overhead = engine_cycles(config, EngineCommand(m=1, n=1, k=1)) - 16     # one tile of 2R
    tiles = 3 * 2
    for name in VARIANT_NAMES:
        # the window alone still runs every tile, for its floor of 2R slots
        want = (0 if "compact" in name else dense if name == "dense"
                else tiles * 16 + overhead + lookahead_latency(with_window(config, 2), False))
        assert row["cycles"][name] == want, name
    assert row["ideal"] == 0 and row["tile_bound"] == overhead


def fake_step(step=7):
    config = timing_config()
    rows = []
    for i, (kind, gemm) in enumerate(CASES):
        rows.append({"name": f"layer{i}.{kind}", "layer": f"layer{i}", "kind": kind,
                     **measure_gemm(config, gemm, kind)})
    return {"capture": "synthetic", "step": step, "epoch": 1, "batch": 4, "commands": rows,
            "totals": totals(rows)}


@pytest.fixture(scope="module")
def step():
    return fake_step()


def test_totals_split_backward_and_step(step):
    t = step["totals"]
    rows = step["commands"]
    backward = [r for r in rows if r["kind"] != "forward"]
    for name in VARIANT_NAMES:
        assert t["backward"]["cycles"][name] == sum(r["cycles"][name] for r in backward)
        assert t["step"]["cycles"][name] == (t["backward"]["cycles"][name] +
                                            t["forward"]["cycles"][name])
    assert t["backward"]["ideal"] == sum(r["ideal"] for r in backward)


def test_headline_fields_and_merge(step):
    entry = headline(step, DEFAULT)
    assert set(entry) == set(HEADLINE_FIELDS) | {"layers"}
    back = step["totals"]["backward"]
    assert entry["backward_cycles_skip"] == back["cycles"][DEFAULT]
    assert entry["backward_speedup"] == back["cycles"]["dense"] / back["cycles"][DEFAULT]
    assert entry["backward_of_ideal"] == back["ideal"] / back["cycles"][DEFAULT]
    assert entry["skip_area_overhead"] is None and entry["step"] == 7
    assert len(entry["layers"]) == len(CASES)
    assert set(entry["layers"][0]) == {"name", "kind", "M", "N", "K", "zero_a", "zero_b",
                                       "masked_out", "cycles", "ideal"}
    existing = {"skip_area_overhead": 0.043, "yosys_cells": 123, "backward_speedup": 9.0}
    area = {"overhead": {"window2": {"fraction_8x8": 0.038}, "window4": {"fraction_8x8": 0.1}}}
    merged = headline(step, "la2", existing, area)
    assert merged["skip_area_overhead"] == 0.038 and merged["yosys_cells"] == 123
    assert merged["design"] == "la2" and merged["window"] == 2
    assert merged["backward_speedup"] == back["cycles"]["dense"] / back["cycles"]["la2"]
    # a window not synthesised has no figure (an old one of another window is not kept)
    assert headline(step, "la3_compact", existing, area)["skip_area_overhead"] is None
    assert headline(step, "compact", existing, area)["skip_area_overhead"] == 0.0


def test_measurement_section_keeps_other_networks(step):
    first = measurement_section({"a": {"steps": [step]}}, DEFAULT)
    second = measurement_section({"b": {"steps": [step]}}, DEFAULT, first)
    assert set(second["networks"]) == {"a", "b"}
    assert set(second["variants"]) == set(VARIANT_NAMES)
    stale = dict(first, variants={"dense": {}})
    assert set(measurement_section({"b": {"steps": [step]}}, DEFAULT, stale)["networks"]) == \
        {"b"}


def test_report(step, tmp_path):
    networks = {"digits_cnn": {"steps": [fake_step(3), step]},
                "resnet18": {"steps": [step]}}
    window = f"window{VARIANTS[VARIANT_NAMES.index(DEFAULT)].depth}"
    area = {"overhead": {window: {"fraction_8x8": 0.05, "fraction_4x4": 0.09}}}
    md, png = skip_measure.write_report(networks, DEFAULT, tmp_path, {}, area)
    text = md.read_text()
    assert png.stat().st_size > 10_000
    back = step["totals"]["backward"]
    x = back["cycles"]["dense"] / back["cycles"][DEFAULT]
    verdict = "met" if x >= 1.5 else "missed"
    assert f"**Backward speedup >= 1.5x on the digits CNN: {verdict}" in text
    assert f"{x:.2f}x (every captured step:" in text
    of_ideal = back["ideal"] / back["cycles"][DEFAULT]
    assert of_ideal < 0.8
    assert "of the ideal (ideal / cycles): missed.** Measured at the last step: " \
        f"{100 * of_ideal:.0f}% on digits_cnn" in text
    assert "sparsity_study.md#why-the-ideal-is-out-of-reach-and-what-would-be-needed" in text
    assert "| resnet18, 7 |" in text and "| 5.0% |" in text
    assert "not synthesised" not in text
    assert "not synthesised" in skip_measure.markdown(networks, DEFAULT, {}, None)
    for name in VARIANT_NAMES:
        assert f"| `{name}` | {back['cycles'][name]} |" in text
    assert text.count("### digits_cnn, step") == 3        # two summaries, one per-command


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        skip_measure.main(["--default", "la5_compact", "--no-write"])
    assert "invalid choice: 'la5_compact'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        skip_measure.main(["--nets", "digits_mlp", "--no-write"])
    assert "nets must be a comma-separated subset of" in capsys.readouterr().err


def test_choose_default(step):
    """The fastest window whose measured 8x8 skip area fits the budget; the fallback when no
    window has been synthesised."""
    networks = {"digits_cnn": {"steps": [step]}}
    back = step["totals"]["backward"]
    speeds = {d: back["cycles"]["dense"] / back["cycles"][f"la{d}_compact_swap"] for d in (2, 3, 4)}
    assert skip.choose_default(networks) == DEFAULT
    assert skip.choose_default(networks, {"overhead": {}}) == DEFAULT
    fits = {f"window{d}": {"fraction_8x8": 0.05} for d in (2, 3, 4)}
    best = max(speeds, key=speeds.get)
    assert skip.choose_default(networks, {"overhead": fits}) == f"la{best}_compact_swap"
    over = {**fits, f"window{best}": {"fraction_8x8": skip.AREA_BUDGET + 0.001}}
    rest = {d: v for d, v in speeds.items() if d != best}
    want = max(rest, key=rest.get)
    assert skip.choose_default(networks, {"overhead": over}) == f"la{want}_compact_swap"
    # a mask design competes with its own area (window + masks)
    masked = {**over, f"mask_window{want}": {"with_window_fraction_8x8": 0.05}}
    mask_speed = back["cycles"]["dense"] / back["cycles"][f"la{want}_compact_swap_mask"]
    chosen = skip.choose_default(networks, {"overhead": masked})
    assert chosen == (f"la{want}_compact_swap_mask" if mask_speed > speeds[want]
                      else f"la{want}_compact_swap")
    assert skip.area_fraction({"overhead": masked}, f"la{want}_compact_swap_mask") == 0.05
    assert skip.area_fraction({"overhead": masked}, f"la{best}_compact_swap_mask") is None
    assert skip.area_fraction(None, "compact") == 0.0


def test_skip_area_composition():
    """The area arithmetic of scripts.skip_area (sim.experiments.skip.area_overheads): each
    figure is the difference of two whole engines over the dense array (4x4 flat, 8x8 by
    parts); the composed 8x8 estimate (64 PE increases, the 8x8 sequencer's increase and twice
    the 4x4 engine's remainder) is kept beside it; a mask entry is the masked engine less the
    engine with its window."""
    area = {"pe_os": {"cells": 100}, "pe_os_window2": {"cells": 110},
            "sequencer_os_8x8": {"cells": 1000}, "sequencer_os_8x8_window2": {"cells": 1500},
            "sequencer_os_4x4": {"cells": 800}, "sequencer_os_4x4_window2": {"cells": 1100},
            "engine_os_4x4_window2": {"cells": 5000, "memory_bits": 700},
            "engine_os_4x4": {"cells": 4000, "memory_bits": 400}}
    dense = {"array_os_4x4": {"cells": 2000}, "array_os_8x8": {"cells": 8000}}

    def engine(cells, lut, bits):
        return {"cells": cells, "ecp5_lut": lut, "ecp5_ff": cells // 10, "ecp5_dsp": 16,
                "memory_bits": bits}

    engines = {"engine_os_8x8": engine(10_000, 5_000, 1_000),
               "engine_os_8x8_window2": engine(11_200, 5_700, 1_600),
               "engine_os_8x8_window2_mask": engine(11_800, 6_000, 1_900)}
    row = area_overheads(area, dense, (2,), engines=engines)["window2"]
    assert row["engine_4x4_cells"] == 1000 and row["fraction_4x4"] == 0.5
    assert row["rest_4x4_cells"] == 1000 - 16 * 10 - 300
    assert row["composed_cells_8x8"] == 64 * 10 + 500 + 2 * (1000 - 160 - 300)
    assert row["cells_8x8"] == 1200 and row["fraction_8x8"] == 1200 / 8000
    assert row["fraction_engine_8x8"] == 1200 / 10_000
    assert (row["ecp5_lut_8x8"], row["ecp5_ff_8x8"], row["ecp5_dsp_8x8"]) == (700, 120, 0)
    assert row["memory_bits_4x4"] == 300 and row["memory_bits_8x8"] == 600
    area.update({"sequencer_os_8x8_window2_mask": {"cells": 1700},
                 "mask_writer_8x8": {"cells": 400}})
    masks = area_overheads(area, dense, (2,), (2,), engines=engines)["mask_window2"]
    assert masks["sequencer_8x8_cells"] == 200 and masks["writer_8x8_cells"] == 400
    assert masks["cells_8x8"] == 600 and masks["fraction_8x8"] == 600 / 8000
    assert masks["memory_bits_8x8"] == 300
    assert masks["with_window_fraction_8x8"] == 1800 / 8000
