# amaranth: UnusedElaboratable=no
"""Runner: one training step of the digits CNN replayed on GemmEngine (Verilator in make test,
Icarus too in make regress), and the pure-Python checks of the replay library
(:mod:`sim.replay`): the step is the one training captures, folding each bias gradient into its
weight gradient is bit-exact, and the split into engine commands reproduces every golden
result."""

import dataclasses
import json
import os
import types

import numpy as np
import pytest

from scripts.results import RESULTS_DIR
from sim.config import ArrayConfig, EngineConfig
from sim.engine_model import FIELD_BITS, EngineError, validate
from sim.formats import OPERAND_FORMATS
from sim.gemm import TAG_OF, gemm
from sim.numerics import to_float32
from sim.lowering import GemmCommand
from sim.nn import AccelBackend, build_network, load_digits_split, train
from sim.replay import (REPLAY_CONFIG, WorkloadGemm, chunk_limits, fold_bias_grad,
                        fold_bias_grads, golden_replay, split_gemm, split_step, step_statistics,
                        training_step_gemms)
from tb.replay_runner import REPLAY_ENGINE, run_replay
from tb.vectors import mixed_bits, moderate_bits

def test_replay_training_step(simulator):
    """Every GEMM of step 0 through the RTL engine, every result word bit for bit."""
    if simulator == "icarus" and os.environ.get("SPARTA_REPLAY_ICARUS") != "1":
        pytest.skip("the Icarus replay takes about 1.5 hours, more than make regress's budget: "
                    "SPARTA_REPLAY_ICARUS=1 runs it (the same 8x8 engine runs its random "
                    "commands on Icarus in make regress)")
    run_replay(simulator)


# -- the replay library (pure Python) --------------------------------------------------------

@pytest.fixture(scope="module")
def network_step():
    """The step's GEMMs as the network computes them (bias gradients separate)."""
    return training_step_gemms(fold_bias=False)


@pytest.fixture(scope="module")
def step(network_step):
    """The step's GEMMs as the engine runs them (bias gradients folded)."""
    return fold_bias_grads(network_step)


def by_name(gemms):
    return {g.name: g for g in gemms}


#: Engines the split is checked on: the replay's; memories so small that every GEMM is cut
#: along M, N and K (odd array, transposed blocks narrower than the array); large memories.
SPLIT_CONFIGS = {
    "replay": REPLAY_ENGINE,
    "tiny 3x5": EngineConfig(array=ArrayConfig(rows=3, cols=5), spad_width=16, a_rows=12,
                             b_rows=5, acc_width=16, acc_rows=13),
    "large": EngineConfig(spad_width=128, a_rows=256, b_rows=256, acc_width=128, acc_rows=256),
}


def test_step_is_the_workloads_run():
    """The replayed run is the digits CNN as trained for docs/results/workloads.json."""
    from scripts.train import parse_args

    assert REPLAY_CONFIG == parse_args(["--net", "digits_cnn"]).config
    recorded = json.loads((RESULTS_DIR / "workloads.json").read_text())
    assert recorded["networks"]["digits_cnn"]["config"] == dataclasses.asdict(REPLAY_CONFIG)


def test_step_gemms(step, network_step):
    """The 15 GEMMs the network computes are the 11 engine GEMMs of the lowering (its order,
    shapes and bias rows) once the 4 bias gradients are folded; three kinds, fp16 tags, bias
    accumulation, real transposes; each golden result is the golden GEMM of its operands."""
    assert len(network_step) == 15 and len(step) == 11
    assert training_step_gemms()[-1].bias_row                       # folded by default
    commands = build_network("digits_cnn").commands(batch_size=REPLAY_CONFIG.batch_size)
    assert [g.name for g in step] == [c.name for c in commands]
    for g, c in zip(step, commands):
        assert (g.kind, g.M, g.N, g.K, g.transpose_a, g.transpose_b, g.accumulate,
                g.bias_row) == (c.kind, c.M, c.N, c.K, c.transpose_a, c.transpose_b,
                                c.accumulate, c.bias_row), c.name
        assert not g.a_tags.any() and not g.b_tags.any()          # tag 0: fp16
        assert np.array_equal(g.golden(), g.out_bits), g.name
    assert [g.name for g in step if g.bias_row] == [
        "fc2.weight_grad", "fc1.weight_grad", "conv2.weight_grad", "conv1.weight_grad"]
    assert {g.kind for g in step} == {"forward", "backward_data", "weight_grad"}
    assert any(g.transpose_a for g in step) and any(g.transpose_b for g in step)
    # real data: ReLU/dropout zeros and non-trivial results
    assert all(np.count_nonzero(g.out_bits) > g.out_bits.size // 2 for g in step)
    assert (step[0].c_bits == 0).all()                   # biases start at zero


def test_step_matches_training_capture(network_step, tmp_path):
    """The replay recomputes exactly the step that training captures (operands, C_in,
    results), without reading a capture."""
    config = dataclasses.replace(REPLAY_CONFIG, epochs=1)      # step 0 does not depend on it
    train(config, AccelBackend(), load_digits_split(), capture_dir=tmp_path,
          gemm_capture_steps=[0])
    with np.load(tmp_path / "digits_cnn" / "accel" / "step_000000.npz") as capture:
        for g in network_step:
            prefix = f"gemm/{g.name}"
            assert np.array_equal(capture[f"{prefix}/a"], g.a_bits), g.name
            assert np.array_equal(capture[f"{prefix}/b"], g.b_bits), g.name
            assert np.array_equal(capture[f"{prefix}/out"].view(np.uint32), g.out_bits), g.name
            if g.accumulate:
                assert np.array_equal(capture[f"{prefix}/c"].view(np.uint32)[0], g.c_bits[0])


# -- folding the bias gradients (pure Python) ------------------------------------------------

def _one_bits(fmt_name):
    fmt = OPERAND_FORMATS[fmt_name]
    return fmt.bias << fmt.man_bits                              # 1.0


@pytest.mark.parametrize("operand_format", ["fp16", "e4m3", "e5m2"])
def test_fold_is_bit_exact_on_the_step(operand_format, network_step):
    """On the real step (its operands rounded to each operand format): the golden GEMM of
    every folded weight gradient gives, bit for bit, the network's weight-gradient result in
    its rows [:M] and the network's bias-gradient result in row M; A gains exactly the
    network's ones (1.0 of the format, its tag) as column M of the stored K x M operand, and
    B is unchanged."""
    gemms = network_step if operand_format == "fp16" else \
        training_step_gemms(operand_format=operand_format, fold_bias=False)
    separate = by_name(gemms)
    folded = fold_bias_grads(gemms)
    assert [g.name for g in folded] == [g.name for g in gemms
                                        if not g.name.endswith(".bias_grad")]
    tag = TAG_OF[operand_format]
    checked = 0
    for g in folded:
        if not g.bias_row:
            assert g is separate[g.name]                         # untouched
            continue
        layer = g.name.removesuffix(".weight_grad")
        weight, bias = separate[g.name], separate[f"{layer}.bias_grad"]
        m = weight.M
        assert (g.M, g.N, g.K, g.transpose_a) == (m + 1, weight.N, weight.K, True)
        assert np.array_equal(g.a_bits[:, :m], weight.a_bits)
        assert np.array_equal(g.a_tags[:, :m], weight.a_tags)
        assert (g.a_bits[:, m] == _one_bits(operand_format)).all()
        assert (g.a_tags[:, m] == tag).all()
        assert g.b_bits is weight.b_bits and np.array_equal(g.b_bits, bias.b_bits)
        result = g.golden()                                      # recomputed, not copied
        assert np.array_equal(result[:m], weight.out_bits), g.name
        assert np.array_equal(result[m], bias.out_bits[0]), g.name
        assert np.array_equal(g.out_bits, result), g.name
        assert np.count_nonzero(result[m]) > result.shape[1] // 2          # real sums
        checked += 1
    assert checked == 4




def _finite_operand(rng, shape, formats):
    """``(bits, tags)`` of random finite operands of random formats among ``formats``:
    moderate magnitudes, subnormals and zeros of both signs (``mixed_bits`` with its
    infinities and NaNs redrawn as moderate values, so that specials are only where a test
    puts them and most sums stay finite)."""
    count = int(np.prod(shape))
    choice = rng.integers(0, len(formats), count)
    bits = np.zeros(count, dtype=np.uint64)
    for index, name in enumerate(formats):
        fmt, chosen = OPERAND_FORMATS[name], choice == index
        drawn = mixed_bits(rng, fmt, int(chosen.sum()))
        finite = np.isfinite(to_float32(fmt, drawn))
        bits[chosen] = np.where(finite, drawn, moderate_bits(rng, fmt, drawn.size))
    tags = np.array([TAG_OF[formats[c]] for c in choice], dtype=np.uint8)
    return bits.astype(np.uint16).reshape(shape), tags.reshape(shape)


@pytest.mark.parametrize("transposes", [(True, False), (False, True)],
                         ids=["A stored KxM", "A stored MxK, ones stored Kx1"])
@pytest.mark.parametrize("operands", ["fp16", "e4m3", "e5m2", "mixed"])
def test_fold_is_bit_exact_on_random_data(operands, transposes):
    """Random operands with signed zeros, subnormals, infinities and NaNs (per-element format
    tags when mixed): the folded GEMM's golden result equals the separate weight-gradient and
    bias-gradient GEMMs' results bit for bit, in both stored orientations of A."""
    rng = np.random.default_rng(20240611)
    m, n, k = 11, 9, 600
    formats = ["fp16", "e4m3", "e5m2"] if operands == "mixed" else [operands]
    weight_transposed, ones_transposed = transposes
    x_bits, x_tags = _finite_operand(rng, (k, m) if weight_transposed else (m, k), formats)
    dy_bits, dy_tags = _finite_operand(rng, (k, n), formats)
    # specials where they show: a column of -0 (every sum +0), NaN operands in column 1, an
    # infinity in column 2 and infinities of both signs in column 3 (fp16 where the format
    # has none), an infinite X in weight row 4
    special = "fp16" if operands == "e4m3" else formats[-1]
    fmt = OPERAND_FORMATS[special]
    dy_bits[:, 0], dy_tags[:, 0] = 0x8000, TAG_OF["fp16"]
    for (row, col), value in {(5, 1): fmt.nan_bits, (7, 2): fmt.inf_bits,
                              (3, 3): fmt.inf_bits, (9, 3): fmt.inf_bits | fmt.sign_mask}.items():
        dy_bits[row, col], dy_tags[row, col] = value, TAG_OF[special]
    x_at = (8, 4) if weight_transposed else (4, 8)
    x_bits[x_at], x_tags[x_at] = fmt.inf_bits | fmt.sign_mask, TAG_OF[special]
    ones_format = "e5m2" if operands == "mixed" else operands
    ones_shape = (k, 1) if ones_transposed else (1, k)
    ones_bits = np.full(ones_shape, _one_bits(ones_format), dtype=np.uint16)
    ones_tags = np.full(ones_shape, TAG_OF[ones_format], dtype=np.uint8)

    def workload(name, a_bits, a_tags, transpose_a):
        out = gemm(a_bits, dy_bits, a_fmt=a_tags, b_fmt=dy_tags, transpose_a=transpose_a)
        return WorkloadGemm(name=name, kind="weight_grad", transpose_a=transpose_a,
                            transpose_b=False, a_bits=a_bits, a_tags=a_tags, b_bits=dy_bits,
                            b_tags=dy_tags, c_bits=None, out_bits=out)

    weight = workload("x.weight_grad", x_bits, x_tags, weight_transposed)
    bias = workload("x.bias_grad", ones_bits, ones_tags, ones_transposed)
    folded = fold_bias_grad(weight, bias)
    assert (folded.M, folded.N, folded.K, folded.bias_row) == (m + 1, n, k, True)
    assert folded.a_bits.shape == ((k, m + 1) if weight_transposed else (m + 1, k))
    result = folded.golden()
    assert np.array_equal(result[:m], weight.out_bits)
    assert np.array_equal(result[m], bias.out_bits[0])
    assert np.array_equal(folded.out_bits, result)
    # the corner cases are reached, in the bias row too: +0 sums of -0 products (NaN with
    # the infinite X), NaN from a NaN operand and from inf - inf, an infinite sum, and finite
    # sums elsewhere
    values = result.view(np.float32)
    assert (np.delete(result[:, 0], 4) == 0).all() and result[4, 0] == 0x7FC00000
    assert (result[:, 1] == 0x7FC00000).all() and result[m, 3] == 0x7FC00000
    assert np.isinf(values[m, 2]) and not np.isfinite(values[4, 4:]).any()
    assert np.isfinite(values[:4, 4:]).all() and np.count_nonzero(result[m, 4:]) == n - 4
    # and the check is not vacuous: a wrong encoding of 1 changes the bias row only
    wrong = dataclasses.replace(bias, a_bits=ones_bits + 1)
    changed = fold_bias_grad(weight, wrong).golden()
    assert np.array_equal(changed[:m], result[:m])
    assert not np.array_equal(changed[m], result[m])


def test_fold_rejects_bad_input(network_step):
    gemms = by_name(network_step)
    weight, bias = gemms["fc2.weight_grad"], gemms["fc2.bias_grad"]
    with pytest.raises(ValueError, match="must be '<layer>.weight_grad' and "
                                         "'<layer>.bias_grad' of one layer"):
        fold_bias_grad(weight, gemms["fc1.bias_grad"])
    with pytest.raises(ValueError, match="fc2.bias_grad: B .* must be the B of "
                                         "fc2.weight_grad"):
        fold_bias_grad(weight, dataclasses.replace(bias, b_bits=bias.b_bits ^ 1))
    with pytest.raises(ValueError, match="fc2.bias_grad: M must be 1"):
        twice = np.concatenate([bias.a_bits, bias.a_bits])
        fold_bias_grad(weight, dataclasses.replace(
            bias, a_bits=twice, a_tags=np.zeros_like(twice, dtype=np.uint8),
            out_bits=np.concatenate([bias.out_bits, bias.out_bits])))
    with pytest.raises(ValueError, match="fc2.bias_grad: a folded GEMM must not accumulate"):
        fold_bias_grad(weight, dataclasses.replace(bias, c_bits=bias.out_bits))
    with pytest.raises(ValueError, match="bias_grad must be a WorkloadGemm"):
        fold_bias_grad(weight, "fc2.bias_grad")
    folded = fold_bias_grad(weight, bias)
    with pytest.raises(ValueError, match="fc2.weight_grad already has its bias row"):
        fold_bias_grad(folded, bias)
    with pytest.raises(ValueError, match="fc2.weight_grad already has its bias row"):
        fold_bias_grads([weight, bias, bias])
    with pytest.raises(ValueError, match="fc2.bias_grad: no fc2.weight_grad before it"):
        fold_bias_grads([bias, weight])
    with pytest.raises(ValueError, match="fc2.forward: bias_row needs a weight_grad GEMM"):
        dataclasses.replace(gemms["fc2.forward"], bias_row=True)
    with pytest.raises(ValueError, match="fold_bias must be a bool"):
        training_step_gemms(fold_bias=1)


@pytest.mark.parametrize("name", list(SPLIT_CONFIGS))
def test_split_reproduces_golden(step, name):
    """The split commands, run on the golden GEMM as the engine runs them (k slices chained
    through the FP32 accumulator memory), give every workload result bit for bit; every
    command is valid for the engine and keeps the GEMM's transposes; k slices ascend."""
    config = SPLIT_CONFIGS[name]
    commands = split_step(step, config)
    for index, g in enumerate(step):
        own = [c for c in commands if c.index == index]
        assert own and all(c.gemm == g.name for c in own)
        for c in own:
            assert validate(config, c.command) is EngineError.NONE, c
            assert (c.command.a_transpose, c.command.b_transpose) == (g.transpose_a,
                                                                     g.transpose_b)
            assert c.command.accumulate == (not c.first or g.accumulate)
        blocks = {}
        for c in own:
            blocks.setdefault((c.rows, c.cols), []).append(c.depth)
        for depths in blocks.values():                  # contiguous, ascending, all of K
            assert [d[0] for d in depths] == [0] + [d[1] for d in depths[:-1]]
            assert depths[-1][1] == g.K
        assert len({c.depth for c in own}) == -(-g.K // chunk_limits(g, config)["k"])
        assert sum(c.macs for c in own) == g.macs
        assert np.array_equal(golden_replay(g, own), g.out_bits), g.name
    if name == "tiny 3x5":     # every GEMM chained over k slices but the backward-data ones
        chained = {g.name for i, g in enumerate(step)          # with K <= 16
                   if len({c.depth for c in commands if c.index == i}) > 1}
        assert {g.name for g in step} - chained == {"fc2.backward_data", "conv2.backward_data"}
    stats = step_statistics(commands, config)
    assert stats["total"]["commands"] == len(commands)
    assert stats["total"]["macs"] == sum(g.macs for g in step) == 13_777_216
    assert set(stats) == {"forward", "backward_data", "weight_grad", "total"}


def test_split_fails_when_a_slice_is_lost(step):
    """The golden check of the split is not vacuous: drop one k slice, or start a chained
    slice from +0, and results change."""
    g = by_name(step)["conv2.weight_grad"]               # K = 2048, bias row folded in
    commands = split_gemm(g, REPLAY_ENGINE)
    assert len({c.depth for c in commands}) > 1
    assert not np.array_equal(golden_replay(g, commands[1:]), g.out_bits)
    unchained = [dataclasses.replace(c, command=dataclasses.replace(c.command,
                                                                     accumulate=False))
                 for c in commands]
    assert not np.array_equal(golden_replay(g, unchained), g.out_bits)


def test_split_limits():
    """Blocks as large as the memories allow with the GEMM's transposes, balanced, multiples
    of the array size; never beyond the 16-bit command fields."""
    config = REPLAY_ENGINE                 # spad 64 wide, A 72 rows, B 64 rows, acc 64 x 68
    forward = GemmCommand(name="x.forward", layer="x", kind="forward", M=2048, N=72, K=100)
    assert chunk_limits(forward, config) == {"m": 68, "n": 64, "k": 64}
    backward = dataclasses.replace(forward, kind="backward_data", transpose_b=True)
    assert chunk_limits(backward, config) == {"m": 68, "n": 64, "k": 64}
    weight = dataclasses.replace(forward, kind="weight_grad", transpose_a=True)
    assert chunk_limits(weight, config) == {"m": 64, "n": 64, "k": 64}
    commands = split_gemm(forward, config)
    assert {c.command.m for c in commands} == {64}                  # 32 blocks of 64 rows
    assert {c.command.n for c in commands} == {40, 32}              # 72 = 40 + 32
    assert [c.depth for c in commands[:2]] == [(0, 50), (50, 100)]  # balanced k slices
    huge = EngineConfig(spad_width=4096, a_rows=65536, b_rows=65536, acc_width=4096,
                        acc_rows=65536)
    tall = GemmCommand(name="tall.forward", layer="tall", kind="forward", M=70_000, N=8, K=8)
    assert chunk_limits(tall, huge)["m"] == (1 << FIELD_BITS) - 1
    assert [c.rows for c in split_gemm(tall, huge)] == [(0, 35_000), (35_000, 70_000)]


def test_split_rejects_bad_input(step):
    shape = types.SimpleNamespace(name="g", kind="forward", M=8, N=8, K=8, transpose_a=False,
                                  transpose_b=False, accumulate=False)
    with pytest.raises(ValueError, match="config must be an EngineConfig"):
        split_gemm(shape, ArrayConfig())
    with pytest.raises(ValueError, match="g: K must be an integer >= 1"):
        split_gemm(types.SimpleNamespace(**{**vars(shape), "K": 0}), REPLAY_ENGINE)
    with pytest.raises(ValueError, match="g: transpose_a must be a bool"):
        split_gemm(types.SimpleNamespace(**{**vars(shape), "transpose_a": 1}), REPLAY_ENGINE)
    huge = EngineConfig(spad_width=4096, a_rows=65536, b_rows=65536, acc_width=4096,
                        acc_rows=65536)
    tall = types.SimpleNamespace(**{**vars(shape), "M": 70_000})
    with pytest.raises(ValueError, match=r"max_chunk\['m'\] = 70000 does not fit the 16-bit "
                                         r"command field m \(1..65535\)"):
        split_gemm(tall, huge, max_chunk={"m": 70_000})
    with pytest.raises(ValueError, match=r"max_chunk\['k'\] = 65 does not fit the engine's "
                                         r"memories: k <= 64"):
        split_gemm(shape, REPLAY_ENGINE, max_chunk={"k": 65})
    with pytest.raises(ValueError, match="max_chunk must be a dict with keys among"):
        split_gemm(shape, REPLAY_ENGINE, max_chunk={"rows": 8})
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        training_step_gemms(REPLAY_ENGINE)
    g = step[3]
    with pytest.raises(ValueError, match="command of fc2.forward given with GEMM conv1.forward"):
        golden_replay(step[0], split_gemm(g, REPLAY_ENGINE, index=3))
    with pytest.raises(ValueError, match="fc2.forward: out_bits must have shape"):
        dataclasses.replace(g, out_bits=g.out_bits[:, :4])
    with pytest.raises(ValueError, match="fc2.forward: inner dimensions differ"):
        dataclasses.replace(g, a_bits=g.a_bits[:, :9], a_tags=g.a_tags[:, :9])
    with pytest.raises(ValueError, match="fc2.forward: b_tags must have the shape of b_bits"):
        dataclasses.replace(g, b_tags=g.b_tags[:1])
    with pytest.raises(ValueError, match="fc2.forward: a_bits must be a 2-D unsigned"):
        dataclasses.replace(g, a_bits=g.a_bits.astype(np.float32))
