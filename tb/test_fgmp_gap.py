"""The FGMP gap analysis (sim/experiments/fgmp.py, scripts/fgmp_gap.py): reasons partition the
rule, the offline pricing equals the traffic model, and a smoke run of capture + analyse (plain
pytest, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts import fgmp_gap
from sim.experiments import fgmp as gap
from sim.fgmp import T_MAX, FgmpBlockFormat, code_table, encode_tags
from sim.fgmp_control import FgmpPolicy
from sim.fgmp_traffic import step_traffic
from sim.formats import E4M3, E5M2, FP16
from sim.nn import SGD, build_network, train_step
from sim.nn.backend import FgmpBackend
from tb.test_fgmp_workloads import _tiny_digits

REASON = {name: code for code, name in enumerate(gap.REASONS)}


@pytest.mark.parametrize("fmt8", [E4M3, E5M2], ids=str)
def test_reasons_partition_the_rule(fmt8):
    codes = FP16.all_codes()
    start = fmt8.man_bits + 1
    for t in range(start, T_MAX + 1):
        table = gap.reason_table(fmt8, t, start)
        tags = encode_tags(codes, fmt8, t)
        assert np.array_equal(table <= REASON["fp8_subnormal"], tags), f"{fmt8} t={t}"
        # raised_t: fp16 at t, FP8 at the start threshold; never at the start itself
        raised = table == REASON["raised_t"]
        assert np.array_equal(raised, encode_tags(codes, fmt8, start) & ~tags), f"{fmt8} t={t}"
        # underflow: exactly what flushing would turn into FP8 zeros
        flushed = code_table(fmt8, t, flush_underflow=True)[0]
        assert np.array_equal(table == REASON["underflow"], flushed & ~tags), f"{fmt8} t={t}"
    table = gap.reason_table(fmt8, start, start)
    hand = {0x0000: "zero", 0x8000: "zero", 0x3C00: "fp8_normal", 0x0001: "underflow",
            0x7C00: "nan_inf", 0x7E00: "nan_inf", 0x7BFF: "overflow"}
    for bits, reason in hand.items():
        assert gap.REASONS[table[bits]] == reason, f"{fmt8} x={bits:#06x}"
    assert not np.any(table == REASON["raised_t"])


def _tiny_step(net_name="digits_cnn"):
    net = build_network(net_name, width=1)
    data = _tiny_digits(n=2)
    tensors = {}
    train_step(net, SGD(net.parameters(), lr=0.01), FgmpBackend(), data.x_train, data.y_train,
               rng=np.random.default_rng(4), loss_scale=1024.0, tensors=tensors)
    tensors[f"{net.weight_layers()[-1].name}/grad_output"][0, :2] = [2.0 ** -20, -(2.0 ** -19)]
    return net, tensors


def test_offline_pricing_equals_the_traffic_model():
    net, tensors = _tiny_step()
    policy = FgmpPolicy()
    threshold = lambda layer, cls: policy.start(cls) + (layer == "conv2")  # noqa: E731
    variants = gap.variants(policy, threshold, gradient_amax=1.0)
    for name, flush in (("as_run", ()), ("flush_gradient", ("gradient",)),
                        ("flush_all", ("weight", "activation", "gradient"))):
        want = step_traffic(net, tensors, formats=policy.format_of, threshold=threshold,
                            flush_underflow=lambda cls: cls in flush)
        got = gap.price(net, tensors, variants[name][1], FgmpBlockFormat())
        assert (got["bytes_fp16"], got["bytes_fgmp"]) == (want["bytes_fp16"],
                                                          want["bytes_fgmp"]), name
    rows = gap.breakdown(net, tensors, policy, threshold)
    assert all(sum(row[r] for r in gap.REASONS) == row["elements"] for row in rows)
    assert any(row["raised_t"] for row in rows if row["owner"] == "conv2")
    assert any(row["underflow"] for row in rows if row["class"] == "gradient")


def test_capture_and_analyse_smoke(tmp_path, capsys):
    assert fgmp_gap.main(["capture", "--net", "digits_cnn", "--epochs", "1",
                          "--train-samples", "40", "--capture-dir", str(tmp_path)]) == 0
    run = json.loads((tmp_path / "digits_cnn" / "fgmp_history.json").read_text())
    assert run["last_step"] == 0 and run["epochs"] == 1     # 40 samples: a whole batch, then 8
    block = FgmpBlockFormat()
    report = gap.analyse_gap("digits_cnn", tmp_path, None, block)
    # every byte above an all-FP8 step is an fp16 element's second byte, up to bus padding
    _, tensors = gap.load_capture(str(tmp_path / "digits_cnn" / "fgmp" / "step_000000.npz"))
    net = gap.config_for("digits_cnn", 1).build()
    all_fp8 = gap.price(net, tensors, lambda entry, bits: np.ones(bits.shape, bool), block)
    fp16_moved = sum(sum(cell[r] for r in gap.FP16_REASONS)
                     for cell in report["elements_moved_by_class"].values())
    accesses = sum(row["accesses"] for row in report["tensors"])
    extra = report["bytes_fgmp"] - all_fp8["bytes_fgmp"]
    assert fp16_moved - block.bus_bytes * accesses <= extra <= fp16_moved + \
        block.bus_bytes * accesses
    assert fp16_moved > 0
    assert report["variants"]["as_run"]["reduction_percent"] == report["reduction_percent"]
    assert set(report["flush_gradient_effect"]["layers"]) == {"conv1", "conv2", "fc1", "fc2"}
    assert fgmp_gap.main(["analyse", "--net", "digits_cnn", "--capture-dir",
                          str(tmp_path)]) == 0
    assert "points of reduction lost" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        fgmp_gap.main(["analyse", "--net", "resnet18", "--capture-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        fgmp_gap.main(["capture", "--epochs", "0"])
