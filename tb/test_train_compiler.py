"""sim/train_compiler.py: a network's training step (forward, backward data, weight gradient,
SGD of the FP32 masters) and its inference pass compiled into accelerator programs, for dense
networks and for CNNs (3x3 convolutions, im2col by the DMA). The programs run on the golden
model of programs through the host driver's model back end, several steps in a row, and every
DRAM region they write (layer inputs, ReLU outputs, logits, dY, FP32 masters, operand copies;
images with their zero borders) equals an independent whole-tensor numpy reference (sim.gemm,
sim.nn.im2col and sim.epilogue) bit for bit; the bus counters equal the compiler's prediction,
the host does exactly the interactions the compiler declares, the reference's convolutions are
the convolution and its gradients, and a few steps on the digits make the loss fall."""

import asyncio
import dataclasses
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sim.accel_driver import AcceleratorDriver
from sim.accel_model_backend import ModelBackend
from sim.accel_spec import Ctrl, EpilogueOp, Opcode, Reg
from sim.config import AccelConfig, ArrayConfig, EngineConfig
from sim.nn.data import load_digits_split
from sim.nn.layers import Conv2d, Dropout, Flatten, GlobalAvgPool, Linear, ReLU
from sim.nn.network import Network
from sim.nn.networks import digits_cnn, digits_mlp
from sim.numerics import convert, to_float32
from sim.train_compiler import (SUPPORTED_KINDS, batch_bits, compile_training_step, describe,
                                host_loss_gradient, initial_state, plan_training,
                                reference_step, run_inference, run_training_step,
                                training_programs)

#: SPARTA_SEED reruns a case (make regress sets a random one)
SEED = int(os.environ.get("SPARTA_SEED", "1"))
ROOT = Path(__file__).resolve().parent.parent

#: small memories so that every GEMM, bias load, mask and update is tiled (tb/test_accelerator)
SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32, b_rows=32,
                     acc_width=32, acc_rows=32)
#: the demo's engine (8x8, 64 x 64 memories, 64-bit bus: scripts/accel_bench.py)
DEMO = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=8, cols=8), spad_width=64,
                                       a_rows=64, b_rows=64, acc_width=64, acc_rows=64))
CONFIGS = {
    "small-4x4": AccelConfig(engine=SMALL),
    "demo-8x8": DEMO,
    "default": AccelConfig(),
    # FP8 operands only, on a 256-bit bus: a block split in DRAM columns starts on 32 elements
    "e4m3-256": AccelConfig(engine=EngineConfig(
        array=ArrayConfig(rows=4, cols=4, a_formats=("e4m3",), b_formats=("e5m2", "e4m3")),
        spad_width=64, a_rows=64, b_rows=64, acc_width=64, acc_rows=64),
        data_width=256, addr_width=64),
}
#: (configuration, network width, batch): batches that divide no tile
CASES = {"small-4x4": ("small-4x4", 4, 37), "demo-8x8": ("demo-8x8", 8, 50),
         "default": ("default", 8, 13), "e4m3-256": ("e4m3-256", 4, 45)}
LR, WD = 0.0625, 0.001


class CountingBackend:
    """A driver back end that counts what the host does and passes everything on."""

    def __init__(self, inner):
        self.inner = inner
        self.measured_counters = inner.measured_counters
        self.calls = Counter()

    async def read_csr(self, offset):
        self.calls["csr_reads"] += 1
        return await self.inner.read_csr(offset)

    async def write_csr(self, offset, value, strobe=0b1111):
        self.calls["csr_writes"] += 1
        if offset == Reg.CTRL and value & Ctrl.START:
            self.calls["rings"] += 1
        return await self.inner.write_csr(offset, value, strobe)

    async def wait_irq(self, timeout_cycles):
        self.calls["irq_waits"] += 1
        return await self.inner.wait_irq(timeout_cycles)

    async def wait_cycles(self, cycles):
        return await self.inner.wait_cycles(cycles)

    def cycle(self):
        return self.inner.cycle()

    async def write_dram(self, addr, data):
        self.calls["dram_writes"] += 1
        return await self.inner.write_dram(addr, data)

    async def read_dram(self, addr, length):
        self.calls["dram_reads"] += 1
        return await self.inner.read_dram(addr, length)


def _machine(compiled, config):
    model = ModelBackend(config, compiled.layout.size)
    model.dram[:] = compiled.image
    counting = CountingBackend(model)
    return model, counting, AcceleratorDriver(counting)


def _batch(rng, layout, shape):
    x = rng.random((layout.batch,) + shape, dtype=np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    return x, rng.integers(0, layout.classes, layout.batch)


def _compare(layout, dram, tensors, what):
    for name, want in tensors.items():
        got = layout.read(dram, name)
        bad = np.argwhere(got != want)
        assert not len(bad), (f"{what}: region {name} differs in {len(bad)} of {got.size} "
                              f"words, first at {tuple(bad[0])}: got {int(got[tuple(bad[0])]):#x}"
                              f" want {int(want[tuple(bad[0])]):#x}")


def _train_and_check(network, config, batch, *, steps, rng, input_shape):
    """Run ``steps`` training steps through the host driver on the model; after each, every
    region equals the reference's, the bus counts the compiler's prediction and the host's
    interactions the declared ones; then the inference pass."""
    compiled = compile_training_step(network, config, batch, lr=LR, weight_decay=WD,
                                     dropout_seed=SEED, step=0)
    layout = compiled.layout
    model, counting, driver = _machine(compiled, config)
    state = initial_state(layout, network)
    for step in range(steps):
        x, labels = _batch(rng, layout, input_shape)
        counting.calls.clear()
        result = asyncio.run(run_training_step(driver, compiled, x, labels, lr=LR,
                                               weight_decay=WD, dropout_seed=SEED, step=step))
        want = reference_step(layout, state, x, labels, lr=LR, weight_decay=WD,
                              dropout_seed=SEED, step=step)
        inputs = f"step {step}, batch bits {batch_bits(layout, x).tobytes().hex()[:64]}..."
        _compare(layout, model.dram, want.tensors, inputs)
        assert result["loss"] == want.loss
        for name in ("forward", "backward_update"):
            program, counters = result["programs"][name], result[name].counters
            assert (counters["bytes_read"], counters["bytes_written"]) == \
                (program.bytes_read, program.bytes_written), name
        calls = {k: counting.calls[k] for k in compiled.host_interactions}
        assert calls == compiled.host_interactions, calls
        state = want.state
    x, _ = _batch(rng, layout, input_shape)
    logits = asyncio.run(run_inference(driver, compiled, x))
    want = reference_step(layout, state, x, training=False)
    assert np.array_equal(logits, want.tensors["logits"])
    _compare(layout, model.dram, {k: v for k, v in want.tensors.items() if k.endswith(".input")},
             "inference")
    assert model.last_run.bytes_read == compiled.programs["inference"].bytes_read
    return compiled


@pytest.mark.parametrize("case", CASES)
def test_training_steps_are_bit_exact(case):
    name, width, batch = CASES[case]
    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, sum(map(ord, case))])
    compiled = _train_and_check(digits_mlp(width=width, seed=SEED), CONFIGS[name], batch,
                                steps=3, rng=rng, input_shape=(8, 8, 1))
    print(describe(compiled))
    if name == "small-4x4":     # the masks, updates and GEMMs really are tiled here
        forward, backward = compiled.programs["forward"], compiled.programs["backward_update"]
        assert forward.epilogue_counts["DROPOUT"] > 2
        assert backward.epilogue_counts["SGD"] > 3
        assert forward.counts["GEMM"] > 3


def _user_network(seed):
    """1-D input, no Flatten; a Linear without bias; dropout before ReLU; a dropout of p = 0;
    activations after the last Linear."""
    rng = np.random.default_rng(seed)
    return Network(name="user", input_shape=(23,), layers=[
        Linear(name="a", out_features=19, bias=False, input_grad=False, rng=rng),
        Dropout(name="a.drop", p=0.5), ReLU(name="a.relu"),
        Linear(name="b", out_features=40, rng=rng),
        ReLU(name="b.relu"), Dropout(name="b.nodrop", p=0.0),
        Linear(name="c", out_features=7, rng=rng), ReLU(name="c.relu"),
        Dropout(name="c.drop", p=0.125)])


@pytest.mark.parametrize("name", ["small-4x4", "default"])
def test_a_user_network_trains_bit_exact(name):
    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, 7, sum(map(ord, name))])
    _train_and_check(_user_network(SEED), CONFIGS[name], 21, steps=2, rng=rng,
                     input_shape=(23,))


#: (configuration, width, hidden units, batch) of the digits CNN: every GEMM tiled on the 4x4
#: engine, the real network on the demo's, pixels that fill no beat on the FP8 / 256-bit one
CNN_CASES = {"small-4x4": ("small-4x4", 4, 16, 7), "demo-8x8": ("demo-8x8", 8, 64, 3),
             "e4m3-256": ("e4m3-256", 1, 16, 6)}


@pytest.mark.parametrize("case", CNN_CASES)
def test_digits_cnn_trains_bit_exact(case):
    name, width, hidden, batch = CNN_CASES[case]
    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, 11, sum(map(ord, case))])
    compiled = _train_and_check(digits_cnn(width=width, hidden=hidden, seed=SEED),
                                CONFIGS[name], batch, steps=3, rng=rng, input_shape=(8, 8, 1))
    print(describe(compiled))
    # im2col by the DMA: every kernel tap and image row of an output block gathered once
    # (the blocks are whole image rows here), one LOAD per kernel row (three taps: copies) and
    # run of image rows of a block (within an image: the border breaks the even spacing), or
    # per tap where K's chunks cut a kernel row: conv1 and conv2 forward; conv2's backward data
    # and both weight gradients
    image_rows = batch * 8
    forward, backward = compiled.programs["forward"], compiled.programs["backward_update"]
    assert forward.im2col_taps == 2 * 9 * image_rows
    assert backward.im2col_taps == 3 * 9 * image_rows
    for program in (forward, backward):
        assert program.im2col_loads * 3 <= program.im2col_taps, program.im2col_loads
    if name == "small-4x4":     # conv2's K (9 x 8) and the weight gradients' K (pixels) tiled
        assert forward.counts["GEMM"] > 2 * batch * 64 // 16
        assert backward.epilogue_counts["SGD"] > 6


@pytest.mark.parametrize("rescale", [False, True], ids=["plain", "rescaled"])
def test_drowsy_inference_is_sim_drowsy(rescale):
    """DrowsyNet on the accelerator (``drowsy_inference_program``: DROPOUT_PLANE before each
    conv output block, its GEMMs with mask_dropout, SCALE with rescaling): the logits of two
    batches equal :func:`sim.drowsy.drowsy` in the accelerator's numerics bit for bit, the
    bus bytes are the compiler's prediction, every conv GEMM reads the plane; a dense plan
    gives the plain inference pass; bad plans name the field."""
    from sim.drowsy import DrowsyPlan, drowsy
    from sim.nn.backend import make_backend
    from sim.train_compiler import drowsy_inference_program, write_programs

    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, 23, int(rescale)])
    config = AccelConfig(engine=dataclasses.replace(SMALL, output_mask=True))
    network = digits_cnn(width=2, hidden=16, seed=SEED)
    compiled = compile_training_step(network, config, 5, lr=LR)
    layout = compiled.layout
    plan = DrowsyPlan({"conv1": 90, "conv2": 160}, rescale=rescale, seed=int(rng.integers(99)))
    for batch_index in range(2):
        program = drowsy_inference_program(layout, plan, batch_index=batch_index)
        model = ModelBackend(config, program.prog_base + len(program.code))
        model.dram[:layout.size] = compiled.image
        model.dram[program.prog_base:] = program.code
        x, _ = _batch(rng, layout, (8, 8, 1))
        logits = asyncio.run(run_inference(AcceleratorDriver(model), compiled, x, program))
        want = drowsy(network, x, plan, backend=make_backend("accel"), batch_index=batch_index)
        want = want.astype(np.float32).view(np.uint32)
        assert np.array_equal(logits, want), (batch_index, np.argwhere(logits != want)[:4])
        assert model.last_run.bytes_read == program.bytes_read
        counts = Counter(f["op"] for op, f in program.instructions if op == Opcode.EPILOGUE)
        assert counts[EpilogueOp.DROPOUT_PLANE] > 0
        assert (counts[EpilogueOp.SCALE] > 0) == rescale
        masked = [f for op, f in program.instructions if op == Opcode.GEMM
                  and f.get("mask_dropout")]
        conv_gemms = sum(1 for name, first, end in program.sections if name.startswith("conv")
                         for op, _ in program.instructions[first:end] if op == Opcode.GEMM)
        assert len(masked) == conv_gemms > 0
    dense = drowsy_inference_program(layout, DrowsyPlan({}))
    assert dense.instructions == compiled.programs["inference"].instructions
    with pytest.raises(ValueError, match="thresholds: 'fc1' is not a convolution"):
        drowsy_inference_program(layout, DrowsyPlan({"fc1": 3}))
    with pytest.raises(ValueError, match="output_mask"):
        drowsy_inference_program(compile_training_step(network, AccelConfig(engine=SMALL), 5,
                                                       lr=LR).layout, plan)


def _conv_network(*, kernel=3, stride=1, padding=1, dropout=0.0, seed=0):
    """A CNN unlike the digits one: 6x5 images of 3 channels (a pixel's values fill no beat),
    a first convolution without bias, a dropout of ``p = dropout`` after its ReLU (0: nothing),
    a ``Linear`` without bias on the flattened output of the second, ReLU and dropout, and a
    last ``Linear`` to 4 classes."""
    rng = np.random.default_rng(seed)
    return Network(name="user_cnn", input_shape=(6, 5, 3), layers=[
        Conv2d(name="a", out_channels=5, kernel=kernel, stride=stride, padding=padding,
               bias=False, input_grad=False, rng=rng),
        ReLU(name="a.relu"), Dropout(name="a.drop", p=dropout),
        Conv2d(name="b", out_channels=6, rng=rng), ReLU(name="b.relu"), Flatten(name="flat"),
        Linear(name="c", out_features=12, bias=False, rng=rng), ReLU(name="c.relu"),
        Dropout(name="c.drop", p=0.25), Linear(name="d", out_features=4, rng=rng)])


@pytest.mark.parametrize("name", ["small-4x4", "default"])
def test_a_user_cnn_trains_bit_exact(name):
    """Output blocks that split image rows (5 pixels wide on a 4x4 engine), pixels of 3, 5 and
    6 FP16 values (a transfer per pixel of the flattened image), no bias on the first layers."""
    print(f"seed {SEED} (SPARTA_SEED)")
    rng = np.random.default_rng([SEED, 13, sum(map(ord, name))])
    _train_and_check(_conv_network(seed=SEED), CONFIGS[name], 9, steps=2, rng=rng,
                     input_shape=(6, 5, 3))


def _image_values(layout, tensors, name):
    """Region ``name`` of the reference as float64 ``(B, H, W, C)`` values, border cut off."""
    image = layout.images[name]
    p = image.pad
    values = to_float32(image.fmt, tensors[name]).astype(np.float64).reshape(
        image.batch, image.height + 2 * p, image.width + 2 * p, image.channels)
    return values[:, p:p + image.height, p:p + image.width, :]


def _taps(x, w):
    """``sum`` and ``sum of magnitudes`` over the 3x3 taps of ``x`` (B, H, W, C) zero padded
    by 1, times ``w`` (3, 3, C, O): the convolution in float64, written out."""
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    total = magnitude = 0.0
    for ky in range(3):
        for kx in range(3):
            window = padded[:, ky:ky + height, kx:kx + width, :]
            total = total + np.einsum("bhwc,co->bhwo", window, w[ky, kx])
            magnitude = magnitude + np.einsum("bhwc,co->bhwo", abs(window), abs(w[ky, kx]))
    return total, magnitude


def test_the_reference_convolutions_are_the_convolution_and_its_gradients():
    """The reference (the accelerator's definition) against float64 numpy written out tap by
    tap, within the error bounds of its FP32 sums (``K * 2**-24`` of the sum of magnitudes)
    and FP16 roundings: conv1's forward output (its ReLU output), conv2's backward data
    through relu1 (conv1's dY: the flipped kernel really is the gradient) and the weight and
    bias gradients of both convolutions (an SGD step with ``lr = 1`` and no weight decay
    subtracts them from the masters)."""
    print(f"seed {SEED} (SPARTA_SEED)")
    network = digits_cnn(width=2, hidden=8, seed=SEED)
    layout = plan_training(network, CONFIGS["small-4x4"], 4)
    state = initial_state(layout, network)
    x, labels = _batch(np.random.default_rng([SEED, 17]), layout, (8, 8, 1))
    tensors = reference_step(layout, state, x, labels, lr=1.0).tensors

    def weights(layer, c_in):       # the operand copy before the step, and the bias
        master = state[layer].view(np.float32)
        copy = to_float32(layout.formats.weight,
                          convert("fp32", layout.formats.weight, state[layer][:9 * c_in]))
        return copy.astype(np.float64).reshape(3, 3, c_in, -1), master[9 * c_in:][0]

    def close(got, want, bound, what):
        bad = np.argwhere(abs(got - want) > bound)
        assert not len(bad), (f"{what}: {len(bad)} values outside the bound, first at "
                              f"{tuple(bad[0])}: {got[tuple(bad[0])]!r} vs {want[tuple(bad[0])]!r}"
                              f" (inputs {x.tobytes().hex()[:64]}...)")

    x1 = _image_values(layout, tensors, "conv1.input")
    w1, b1 = weights("conv1", 1)
    total, magnitude = _taps(x1, w1)
    relu1 = _image_values(layout, tensors, "relu1.output")
    close(relu1, np.maximum(total + b1, 0), 9 * 2**-24 * (magnitude + abs(b1)) + 1e-30,
          "conv1 forward")

    dy2 = _image_values(layout, tensors, "conv2.grad_output")
    w2, _ = weights("conv2", 2)
    # the adjoint of the forward: each output's dY back to the 9 inputs it read
    dx = np.zeros((4, 10, 10, 2))
    dx_magnitude = np.zeros_like(dx)
    for ky in range(3):
        for kx in range(3):
            dx[:, ky:ky + 8, kx:kx + 8, :] += np.einsum("bhwo,co->bhwc", dy2, w2[ky, kx])
            dx_magnitude[:, ky:ky + 8, kx:kx + 8, :] += np.einsum("bhwo,co->bhwc", abs(dy2),
                                                                  abs(w2[ky, kx]))
    dx, dx_magnitude = dx[:, 1:9, 1:9, :] * (relu1 > 0), dx_magnitude[:, 1:9, 1:9, :]
    dy1 = _image_values(layout, tensors, "conv1.grad_output")
    close(dy1, dx, 2**-11 * abs(dx) + 9 * 4 * 2**-24 * dx_magnitude + 2**-24,
          "conv2 backward data")
    assert np.count_nonzero(dy1) > dy1.size // 4        # the check above checked something

    for layer, inputs, dy, c_in in (("conv1", x1, dy1, 1),
                                    ("conv2", _image_values(layout, tensors, "conv2.input"),
                                     dy2, 2)):
        padded = np.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
        grads, magnitudes = [], []
        for ky in range(3):
            for kx in range(3):
                window = padded[:, ky:ky + 8, kx:kx + 8, :]
                grads.append(np.einsum("bhwc,bhwo->co", window, dy))
                magnitudes.append(np.einsum("bhwc,bhwo->co", abs(window), abs(dy)))
        grads.append(dy.sum(axis=(0, 1, 2))[None])
        magnitudes.append(abs(dy).sum(axis=(0, 1, 2))[None])
        old = state[layer].view(np.float32).astype(np.float64)
        new = tensors[f"{layer}.master"].view(np.float32).astype(np.float64)
        pixels = dy.shape[0] * 64
        close(old - new, np.concatenate(grads),
              2**-23 * (abs(old) + abs(new)) + pixels * 2**-24 * np.concatenate(magnitudes),
              f"{layer} weight gradient")


def test_steps_differ_in_the_dropout_seeds_only():
    layout = plan_training(digits_mlp(width=2), CONFIGS["small-4x4"], 37)
    one, two = (training_programs(layout, lr=LR, weight_decay=WD, dropout_seed=SEED, step=s)
                for s in (4, 5))
    for name in one:
        pairs = list(zip(one[name].instructions, two[name].instructions, strict=True))
        for (op_a, a), (op_b, b) in pairs:
            assert op_a == op_b
            if op_a == Opcode.EPILOGUE and a["op"] == EpilogueOp.DROPOUT:
                assert a["seed"] != b["seed"]
                a, b = {**a, "seed": 0}, {**b, "seed": 0}
            assert a == b, name
    plain = Network(name="plain", input_shape=(8, 8, 1), layers=[
        Flatten(name="flat"), Linear(name="l1", out_features=16, rng=np.random.default_rng(0)),
        ReLU(name="r"), Linear(name="l2", out_features=10, rng=np.random.default_rng(1))])
    compiled = compile_training_step(plain, CONFIGS["small-4x4"], 9, lr=LR)
    assert compiled.host_interactions["dram_writes"] == 2        # the batch and dLogits
    later = training_programs(compiled.layout, lr=LR, weight_decay=0.0, dropout_seed=3, step=9)
    assert all(later[n].code == p.code for n, p in compiled.programs.items())


def _train_on_digits(network, batch: int, lr: float, steps: int):
    """``steps`` training steps of ``network`` on the digits (demo configuration, model back
    end); returns the loss of a held-out batch before and after, and each step's loss."""
    print(f"seed {SEED} (SPARTA_SEED)")
    data = load_digits_split()
    compiled = compile_training_step(network, DEMO, batch, lr=lr, weight_decay=1e-4,
                                     dropout_seed=SEED)
    _, _, driver = _machine(compiled, DEMO)
    held_out = data.x_test[:batch], data.y_test[:batch]

    def held_out_loss():
        return host_loss_gradient(asyncio.run(run_inference(driver, compiled, held_out[0])),
                                  held_out[1])[0]

    before = held_out_loss()
    rng = np.random.default_rng(SEED)
    losses = []
    for step in range(steps):
        rows = rng.choice(len(data.x_train), batch, replace=False)
        result = asyncio.run(run_training_step(driver, compiled, data.x_train[rows],
                                               data.y_train[rows], lr=lr, weight_decay=1e-4,
                                               dropout_seed=SEED, step=step))
        losses.append(result["loss"])
    after = held_out_loss()
    print(f"training loss per step: {' '.join(f'{v:.3f}' for v in losses)}")
    print(f"held-out loss: {before:.4f} before, {after:.4f} after {steps} steps")
    assert all(math.isfinite(v) for v in losses)
    return before, after, losses


def test_training_on_digits_lowers_the_loss():
    """30 steps of digits_mlp on the digits (batch 32, demo configuration, model back end): the
    loss of the inference pass on held-out samples falls, and so does the training loss."""
    before, after, losses = _train_on_digits(digits_mlp(width=8, seed=SEED), 32, 0.1, 30)
    assert after < before
    assert np.mean(losses[-5:]) < losses[0]


def test_digits_cnn_training_lowers_the_loss():
    """8 steps of a small digits CNN (width 4, 32 hidden units, batch 16, lr 0.2) on the
    digits, demo configuration, model back end: the loss of a held-out batch falls."""
    before, after, _ = _train_on_digits(digits_cnn(width=4, hidden=32, seed=SEED), 16, 0.2, 8)
    assert after < before       # (each training loss is another batch's: too noisy to order)


@pytest.mark.parametrize("build", [digits_mlp, digits_cnn])
def test_docs_state_the_compiled_networks(build):
    """docs/accel.md quotes describe() of digits_mlp and digits_cnn (width 8, batch 32) on the
    demo configuration."""
    compiled = compile_training_step(build(width=8), DEMO, 32, lr=0.1)
    text = (ROOT / "docs" / "accel.md").read_text()
    assert describe(compiled) in text, describe(compiled)


@pytest.mark.parametrize("network, config, batch, kwargs, message", [
    (lambda: Network(name="n", input_shape=(8, 8, 1), layers=[
        Conv2d(name="c", out_channels=2, rng=np.random.default_rng(0)),
        GlobalAvgPool(name="pool"), Linear(name="l", out_features=3,
                                           rng=np.random.default_rng(0))]),
     AccelConfig(), 8, {}, r"'pool' is a global_avg_pool layer.*" + ", ".join(SUPPORTED_KINDS)),
    (lambda: _conv_network(kernel=5, stride=2, padding=2), AccelConfig(), 8, {},
     r"'a': kernel must be 3 \(the training compiler supports 3x3 convolutions with stride 1 "
     r"and padding 1\), not 5"),
    (lambda: _conv_network(stride=2), AccelConfig(), 8, {}, r"'a': stride must be 1 .*not 2"),
    (lambda: _conv_network(padding=0), AccelConfig(), 8, {}, r"'a': padding must be 1 .*not 0"),
    (lambda: _conv_network(dropout=0.5), AccelConfig(), 8, {},
     r"'a.drop': dropout \(p > 0\) after a conv2d layer is not supported"),
    (lambda: Network(name="n", input_shape=(8, 8, 1), layers=[
        Conv2d(name="c", out_channels=2, rng=np.random.default_rng(0))]),
     AccelConfig(), 8, {}, r"'c': the last weighted layer must be a Linear"),
    (lambda: Network(name="n", input_shape=(4,), layers=[
        ReLU(name="first"), Linear(name="l", out_features=3, rng=np.random.default_rng(0))]),
     AccelConfig(), 8, {}, r"'first': a relu layer before the first weighted layer"),
    (lambda: Network(name="n", input_shape=(4,), layers=[
        Linear(name="l1", out_features=3, rng=np.random.default_rng(0)),
        Linear(name="l2", out_features=3, input_grad=False, rng=np.random.default_rng(0))]),
     AccelConfig(), 8, {}, r"'l2': input_grad=False"),
    (lambda: "digits_mlp", AccelConfig(), 8, {}, r"network must be a sim.nn.Network"),
    (lambda: digits_mlp(), SMALL, 8, {}, r"config must be an AccelConfig"),
    (lambda: digits_mlp(), AccelConfig(), 0, {}, r"batch must be an integer 1\.\.65535, not 0"),
    (lambda: digits_mlp(), AccelConfig(), 70000, {}, r"batch must be an integer 1\.\.65535"),
    (lambda: digits_mlp(), AccelConfig(), True, {}, r"batch must be an integer"),
    (lambda: digits_mlp(), AccelConfig(), 8.0, {}, r"batch must be an integer"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"lr": 0}, r"lr must be a finite number > 0"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"lr": -0.1}, r"lr must be a finite number > 0"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"lr": float("nan")}, r"lr must be a finite"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"lr": 1e39}, r"lr must be .*FP32 range"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"lr": "0.1"}, r"lr must be a finite number"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"weight_decay": -1e-4},
     r"weight_decay must be a finite number >= 0"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"step": -1}, r"step must be an integer >= 0"),
    (lambda: digits_mlp(), AccelConfig(), 8, {"dropout_seed": 1.5},
     r"dropout_seed must be an integer >= 0"),
    (lambda: digits_mlp(), AccelConfig(engine=EngineConfig(out_formats=("fp16", "fp32"),
                                                           array=ArrayConfig(
                                                               a_formats=("e4m3",)))),
     8, {}, r"activation format e4m3 must be one of engine.out_formats"),
    (lambda: digits_mlp(), AccelConfig(engine=EngineConfig(out_formats=("fp16",))), 8, {},
     r"engine.out_formats must contain fp32"),
    (lambda: digits_mlp(), AccelConfig(engine=EngineConfig(array=ArrayConfig(
        a_formats=("e4m3",), b_formats=("fp16",)))), 8, {}, r"no operand format in common"),
    (lambda: digits_mlp(), AccelConfig(data_width=256, engine=dataclasses.replace(
        SMALL, array=ArrayConfig(rows=4, cols=4, a_formats=("e4m3",), b_formats=("e4m3",)))),
     8, {}, r"fc1.forward: a k chunk must be a multiple of 32 elements.*config too small"),
])
def test_bad_inputs_name_the_field(network, config, batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compile_training_step(network(), config, batch, **{"lr": 0.1, **kwargs})


def test_bad_batches_and_dropout_rates_name_the_field():
    layout = plan_training(digits_mlp(width=1), CONFIGS["small-4x4"], 5)
    with pytest.raises(ValueError, match=r"x must be a float32 batch of 5 samples of 64"):
        batch_bits(layout, np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"x must be a float32 batch"):
        batch_bits(layout, np.zeros((5, 8, 8, 1), np.float64))
    cnn = plan_training(digits_cnn(width=1, hidden=4), CONFIGS["small-4x4"], 5)
    with pytest.raises(ValueError, match=r"x must be a float32 batch of 5 images of 8x8x1, "
                                         r"not float32 \(5, 8, 7, 1\)"):
        batch_bits(cnn, np.zeros((5, 8, 7, 1), np.float32))
    tiny = Network(name="n", input_shape=(4,), layers=[
        Linear(name="l", out_features=3, rng=np.random.default_rng(0)),
        Dropout(name="d", p=0.001)])
    with pytest.raises(ValueError, match=r"layer 'd': p = 0.001 rounds to a threshold of 0"):
        plan_training(tiny, AccelConfig(), 4)
    with pytest.raises(ValueError, match=r"layout must be a TrainingLayout"):
        training_programs(dataclasses.asdict(layout.formats), lr=0.1, weight_decay=0.0,
                          dropout_seed=0, step=0)
