# amaranth: UnusedElaboratable=no
"""Runner: the whole accelerator (AXI4-Lite registers, controller, AXI4 DMA, load and store
paths, GEMM engine) driven by the host driver (sim.accel_driver) on Verilator and Icarus, each
program also run on the driver's golden-model back end and compared: compiled GEMM programs
from DRAM, bad programs and bad bus answers, every register through the bus."""

import dataclasses

import pytest

from hw.accel.accelerator import Accelerator
from sim.config import AccelConfig, ArrayConfig, EngineConfig, accel_config_to_dict
from sim.runner import Design, run_bench
from tb.conftest import regress, verilator_builds_first_only

#: small memories so that the GEMMs are tiled and Icarus stays affordable
SMALL = EngineConfig(array=ArrayConfig(rows=4, cols=4), spad_width=32, a_rows=32, b_rows=32,
                     acc_width=32, acc_rows=32)
CASES = {
    "4x4-d64": (AccelConfig(engine=SMALL), {"programs": 2, "gemms": 3, "largest": 40}),
    "4x4-d128-a64": (AccelConfig(engine=SMALL, data_width=128, addr_width=64),
                     {"programs": 1, "gemms": 2, "largest": 40}),
    # pipelined accumulation (L = 5, S = 3) under the controller: make regress only
    "4x4-l5-d64": (AccelConfig(engine=dataclasses.replace(
                       SMALL, array=ArrayConfig(rows=4, cols=4, mul_stages=3,
                                                acc_interleave=5))),
                   {"programs": 1, "gemms": 3, "largest": 40}),
    # zero skipping with a lookahead window of 2 under the controller: make regress only (the
    # training step below runs it in make test)
    "4x4-w2-d64": (AccelConfig(engine=dataclasses.replace(
                       SMALL, array=ArrayConfig(rows=4, cols=4, skip_zeros=True,
                                                skip_window=2))),
                   {"programs": 1, "gemms": 3, "largest": 40}),
    # the same with output masks: DrowsyNet's dropout plane (make regress for the programs)
    "4x4-w2m-d64": (AccelConfig(engine=dataclasses.replace(
                        SMALL, array=ArrayConfig(rows=4, cols=4, skip_zeros=True,
                                                 skip_window=2), output_mask=True)),
                    {"programs": 1, "gemms": 3, "largest": 40}),
}
#: cases make test leaves to make regress
REGRESS_ONLY = {"4x4-l5-d64", "4x4-w2-d64", "4x4-w2m-d64"}


#: the benches of tb/accelerator_tb.py that every configuration runs
PROGRAM_TESTS = ["compiled_gemms_from_dram", "bad_programs_stop_with_their_error",
                 "epilogues_beside_a_gemm", "every_register_through_the_bus"]

#: training steps (sim.train_compiler) on the RTL: configuration, network, batch, steps, AXI
#: pauses, the simulator make test runs it on (make regress: both) and, for some, a DrowsyNet
#: plan (sim.drowsy.DrowsyPlan fields) whose inference program runs after them. Every program's
#: engine busy counter is checked against the cycle model of its GEMMs. The CNN's three steps
#: take about 3 minutes on Icarus, seconds on Verilator (whose build of the configuration the
#: program benches made already)
HYPER = {"lr": 0.05, "weight_decay": 1e-4, "dropout_seed": 0x5EED}
TRAINING = {
    "cnn-4x4-d64": ("4x4-d64", {"network": "digits_cnn", "width": 2, "hidden": 16, "batch": 4,
                                "steps": 2, **HYPER}, 0.2, "verilator"),
    "mlp-4x4-d64": ("4x4-d64", {"network": "digits_mlp", "width": 1, "batch": 4, "steps": 2,
                                **HYPER}, 0.2, "icarus"),
    # the window's cycles, which depend on the zeros ReLU leaves, against the cycle model
    "mlp-4x4-w2-d64": ("4x4-w2-d64", {"network": "digits_mlp", "width": 1, "batch": 4,
                                      "steps": 2, **HYPER}, 0.2, "icarus"),
    # no step, the inference pass and DrowsyNet's inference program: DROPOUT_PLANE, GEMMs with
    # mask_dropout, SCALE; the products the masks leave, counted
    "cnn-4x4-w2m-d64": ("4x4-w2m-d64", {"network": "digits_cnn", "width": 2, "hidden": 16,
                                        "batch": 2, "steps": 0, **HYPER}, 0.2, "icarus",
                        {"thresholds": {"conv1": 90, "conv2": 160}, "rescale": True,
                         "seed": 7}),
}


def _spec(config):
    return accel_config_to_dict(config)


@pytest.mark.parametrize("name", CASES)
def test_accelerator_runs_compiled_gemms(simulator, name):
    config, sizes = CASES[name]
    if name in REGRESS_ONLY and not regress():
        pytest.skip(f"{name}: make regress only")
    verilator_builds_first_only(simulator, name, next(iter(CASES)))
    run_bench(Design(Accelerator, config), toplevel="accelerator",
              bench_module="tb.accelerator_tb", simulator=simulator, testcase=PROGRAM_TESTS,
              case={"config": _spec(config), "pause": 0.2, **sizes})


@pytest.mark.parametrize("name", TRAINING)
def test_accelerator_runs_training_steps(simulator, name):
    configuration, training, pause, fast, *drowsy = TRAINING[name]
    config = CASES[configuration][0]
    if simulator != fast and not regress():
        pytest.skip(f"{name}: {fast} in make test, both simulators in make regress")
    run_bench(Design(Accelerator, config), toplevel="accelerator",
              bench_module="tb.accelerator_tb", simulator=simulator,
              testcase="training_steps_from_dram",
              case={"config": _spec(config), "pause": pause, "training": training,
                    **({"drowsy": drowsy[0]} if drowsy else {})})


def test_accelerator_rejects_a_bad_config():
    with pytest.raises(ValueError, match="config must be an AccelConfig"):
        Accelerator(SMALL)
