"""The ``sparta`` command: configurations from TOML, presets and --set with errors that name
the key; ``generate`` writes Verilog and a datasheet that agrees with it; dispatch."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from scripts.sparta import main
from sim.config import PRESETS, ArrayConfig, EngineConfig, config_to_dict, engine_config_from
from tb.conftest import regress
from tb.engines import CONFIGS

SMALL = CONFIGS["4x4"]          # its Verilog is in the elaboration cache after tb/test_engine.py


def _set_flags(config: EngineConfig) -> list[str]:
    flags = []
    for key, value in config_to_dict(config).items():
        if key == "array":
            flags += [f"--set=array.{k}={json.dumps(v)}" for k, v in value.items()]
        else:
            flags.append(f"--set={key}={json.dumps(value)}")
    return flags


def test_config_round_trip_and_presets():
    assert engine_config_from({}) == PRESETS["8x8"]
    assert engine_config_from({"preset": "4x4"}) == PRESETS["4x4"]
    assert engine_config_from(config_to_dict(SMALL)) == SMALL
    changed = engine_config_from({"preset": "4x4", "array": {"dataflow": "ws"}, "a_rows": 40})
    assert changed.array == ArrayConfig(rows=4, cols=4, dataflow="ws") and changed.a_rows == 40


@pytest.mark.parametrize("data, message", [
    ({"array": {"rows": 0}}, r"array\.rows must be an integer in 1\.\.32, not 0"),
    ({"array": {"colums": 4}}, r"unknown configuration key 'array\.colums'; allowed: .*array\.cols"),
    ({"spad": 4}, r"unknown configuration key 'spad'; allowed: a_rows, .*spad_width"),
    ({"preset": "3x3"}, r"preset must be one of \['16x16', '4x4', '4x4-fast', '8x8', '8x8-fast'\], not '3x3'"),
    ({"array": {"dataflow": "rs"}}, r"array\.dataflow must be one of \['os', 'ws'\]"),
    ({"out_formats": ["fp32", "fp8"]}, r"out_formats must contain only .* not 'fp8'"),
    ({"array": [4, 4]}, r"array must be a table of"),
])
def test_bad_configuration_names_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        engine_config_from(data)


def test_cli_reads_toml_preset_and_overrides(tmp_path, capsys):
    from scripts.sparta import _parser, config_from_args

    toml = tmp_path / "engine.toml"
    toml.write_text('preset = "4x4"\nspad_width = 32\n[array]\nmul_stages = 2\n')
    args = _parser().parse_args(["generate", "--config", str(toml), "--set", "array.rows=8",
                                 "--set", 'array.b_formats=["e4m3"]', "--set", "a_rows=40"])
    config = config_from_args(args)
    assert config.array == ArrayConfig(rows=8, cols=4, mul_stages=2, b_formats=("e4m3",))
    assert (config.spad_width, config.a_rows) == (32, 40)
    toml.write_text("[array]\nrows = 'many'\n")
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--config", str(toml), "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "array.rows must be an integer in 1..32, not 'many'" in capsys.readouterr().err


def test_cli_errors_exit_2_with_the_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["generate", "--set", "array.rows=0", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "array.rows must be an integer in 1..32, not 0" in capsys.readouterr().err
    toml = tmp_path / "bad.toml"
    toml.write_text("[array\n")
    with pytest.raises(SystemExit):
        main(["generate", "--config", str(toml)])
    assert f"--config {toml}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gemm", "-m", "0", "--preset", "4x4"])
    assert "-m must be >= 1, not 0" in capsys.readouterr().err


def test_gemm_of_any_size_on_the_model(capsys):
    """Larger than the 4x4 preset's memories in every dimension: tiled, equal to the golden."""
    assert main(["gemm", "--simulator", "model", "-m", "300", "-n", "20", "-k", "270",
                 "--a-format", "e4m3", "--zeros", "0.5", *_set_flags(SMALL)]) == 0
    out = capsys.readouterr().out
    assert "equal bit for bit" in out and "command(s)" in out and "DIFFER" not in out


def _verilog_ports(verilog: str, top: str) -> dict[str, tuple[str, int]]:
    module = verilog[verilog.index(f"module {top}("):]
    module = module[:module.index("endmodule")]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);",
                                           module, flags=re.M):
        ports[name] = ("in" if direction == "input" else "out", int(msb or 0) + 1)
    return ports


def test_generate_writes_verilog_and_a_datasheet_that_agrees(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), *_set_flags(SMALL)]) == 0
    verilog = (tmp_path / "gemm_engine.v").read_text()
    sheet = json.loads((tmp_path / "gemm_engine.datasheet.json").read_text())
    assert engine_config_from(sheet["config"]) == SMALL
    assert {p["name"]: (p["direction"], p["width"]) for p in sheet["ports"]} == \
        _verilog_ports(verilog, "gemm_engine")
    command = {f["name"]: f for f in sheet["command_word"]}
    assert command["m"] == {"name": "m", "offset": 0, "width": 16}
    assert sum(f["width"] for f in sheet["command_word"]) == \
        dict(_verilog_ports(verilog, "gemm_engine"))["cmd__payload"][1]
    assert sheet["error_codes"]["ZERO_SIZE"] == 1
    timing = sheet["timing"][0]
    assert timing["m"] == timing["n"] == timing["k"] == 1 and timing["cycles"] > 1
    page = (tmp_path / "gemm_engine.datasheet.md").read_text()
    assert "| `cmd__payload` | in | 147 |" in page and "## Timing" in page
    out = capsys.readouterr().out
    assert "gemm_engine.v" in out and "4x4 OS engine" in out


def test_dispatch_passes_options_through(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["measure", "gemm", "--help"])
    assert exit_.value.code == 0
    assert "--arrays" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["measure", "nothing"])
    assert "invalid choice: 'nothing'" in capsys.readouterr().err


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_train_a_network_file(tmp_path, capsys):
    out = tmp_path / "wine.json"
    assert main(["train", "--network-file", str(EXAMPLES / "wine_mlp.py"), "--epochs", "3",
                 "--backends", "accel,fgmp", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["backends"]) == {"accel", "fgmp"} and result["network"] == "wine_mlp"
    assert result["backends"]["accel"]["test_accuracy"] > 0.5
    assert result["provenance"]["commit"]


def test_replay_a_network_file_on_the_rtl(tmp_path, capsys):
    out = tmp_path / "replay.json"
    assert main(["replay", "--network-file", str(EXAMPLES / "strided_cnn.py"),
                 "--batch-size", "8", "--simulator", "verilator", "--out", str(out),
                 *_set_flags(SMALL)]) == 0
    result = json.loads(out.read_text())
    assert result["bit_exact"] and all(g["cycles"] == g["model_cycles"] for g in result["gemms"])
    assert "bit-exact, cycles equal to the model" in capsys.readouterr().out


def test_network_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("def build():\n    return None\n")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--network-file", str(bad)])
    assert exit_.value.code == 2
    assert "missing: load" in capsys.readouterr().err
    bad.write_text("def build():\n    return 3\n\ndef load():\n    return None\n")
    with pytest.raises(SystemExit):
        main(["train", "--network-file", str(bad)])
    assert "build() must return a sim.nn.Network, not 3" in capsys.readouterr().err


def test_measure_a_network_file(tmp_path, capsys):
    fgmp, skip = tmp_path / "fgmp.json", tmp_path / "skip.json"
    assert main(["measure", "fgmp", "--network-file", str(EXAMPLES / "wine_mlp.py"),
                 "--epochs", "2", "--out", str(fgmp)]) == 0
    result = json.loads(fgmp.read_text())["fgmp"]
    assert 0 < result["bytes_fgmp"] < result["bytes_fp16"]
    assert 0 <= result["fp8_share"] <= 1 and result["source"].startswith("golden model")
    assert main(["measure", "skip", "--network-file", str(EXAMPLES / "strided_cnn.py"),
                 "--epochs", "1", "--out", str(skip)]) == 0
    result = json.loads(skip.read_text())["skip"]
    backward = result["backward"]
    assert backward["ideal"] <= backward["cycles"][result["design"]] <= \
        backward["cycles"]["dense"]
    assert {row["kind"] for row in result["gemms"]} == {"forward", "weight_grad",
                                                        "backward_data"}
    assert "backward pass of a training step" in capsys.readouterr().out


def test_measure_inference_of_a_network_file(tmp_path, capsys):
    """AIP on a user's FC layers, DrowsyNet on its convolutions, trained in FP32 without a
    cache; a technique with nothing to act on says so instead of failing."""
    wine, cnn = tmp_path / "wine.json", tmp_path / "cnn.json"
    assert main(["measure", "inference", "--network-file", str(EXAMPLES / "wine_mlp.py"),
                 "--epochs", "2", "--quick", "--out", str(wine)]) == 0
    result = json.loads(wine.read_text())["inference"]
    assert result["training"]["weights"] is None and not result["training"]["cached"]
    aip = result["aip"]
    assert aip["planned_layers"] == {"fc1": "THRESHOLD", "fc2": "TOP_N"} and aip["classes"] == 3
    for policy in aip["policies"].values():
        assert policy["points"] and (policy["chosen"] is None or
                                     policy["chosen"] in policy["points"])
    assert result["drowsy"]["not_applicable"].startswith("no convolution")
    assert main(["measure", "inference", "--network-file", str(EXAMPLES / "strided_cnn.py"),
                 "--epochs", "1", "--quick", "--out", str(cnn)]) == 0
    result = json.loads(cnn.read_text())["inference"]
    assert result["aip"]["planned_layers"] == {"fc": "TOP_N"}
    drowsy = result["drowsy"]
    assert drowsy["chosen_thresholds"]["0.5"] == {"conv1": 128}      # one conv: the target
    point = drowsy["methods"]["chosen"]["rescale"]["0.5"]
    assert point["expected_skip"] == pytest.approx(0.5, abs=0.01)
    assert 0 <= point["test"]["top1"] <= point["test"]["top5"] <= 1
    out = capsys.readouterr().out
    assert "wine_mlp AIP on fc1, fc2" in out and "(model figures)" in out
    assert "wine_mlp DrowsyNet: not applicable" in out
    assert "strided_cnn DrowsyNet, chosen drop rates conv1 128/256" in out


def test_inference_measurements_name_what_they_lack():
    from examples.strided_cnn import build as cnn
    from examples.wine_mlp import build as mlp
    from examples.wine_mlp import load
    from sim.experiments.aip import measure_network
    from sim.experiments.drowsy import measure_net
    from sim.experiments.training import Fp32Trained
    from sim.nn import Network, ReLU, TrainConfig

    data = load()
    untrained = Fp32Trained(mlp(), TrainConfig(net="wine_mlp"), data, data, None, cached=False)
    with pytest.raises(ValueError, match="wine_mlp has no convolution"):
        measure_net(untrained, log=lambda _: None)
    convs_only = Network(name="convs", input_shape=(8, 8, 1),
                         layers=cnn().layers[:1] + [ReLU(name="relu")])
    untrained = dataclasses.replace(untrained, network=convs_only)
    with pytest.raises(ValueError, match="convs has no fully connected layer"):
        measure_network(untrained)

def test_schedule_a_network_file(tmp_path, capsys):
    out = tmp_path / "schedule.json"
    assert main(["measure", "schedule", "--network-file", str(EXAMPLES / "strided_cnn.py"),
                 "--epochs", "1", "--finetune-epochs", "1", "--time-limit", "0.5",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())["schedule"]
    assert [level["sparsity"] for level in result["levels"]] == [0.5, 0.7, 0.8, 0.9]
    for level in result["levels"]:
        assert level["layers"], "no pruned layer was scheduled"
        for layer in level["layers"]:
            slots = {name: m["slots"] for name, m in layer["methods"].items()}
            assert layer["bound_slots"] <= min(slots.values()) <= layer["dense_slots"]
            assert layer["methods"][layer["best"]]["slots"] == min(slots.values())
            assert layer["ratio_to_bound"] >= 1
        inference = level["network"]["inference"]
        assert inference["best"] <= inference["natural"] <= inference["dense"]
    assert "ratio to bound" in capsys.readouterr().out


@pytest.mark.skipif(not regress(), reason="make regress only (a Verilator build of the "
                    "8x8 step-list engine)")
def test_schedule_a_network_file_on_the_rtl(tmp_path):
    """``--rtl``: every pruned GEMM of the user's network runs its banked schedule on the RTL
    engine; the driver holds every command to the cycle model and every word to the golden
    model, and the results say so."""
    out = tmp_path / "schedule.json"
    assert main(["measure", "schedule", "--network-file", str(EXAMPLES / "strided_cnn.py"),
                 "--epochs", "1", "--finetune-epochs", "1", "--time-limit", "0.5", "--rtl",
                 "--out", str(out)]) == 0
    rtl = json.loads(out.read_text())["schedule"]["rtl"]["gemms"]
    assert len(rtl) == 8 and all(row["equal"] for row in rtl.values())
    assert all(row["rtl_cycles"] <= row["dense_model_cycles"] for row in rtl.values())


def test_accelerator_configurations_round_trip_and_name_bad_keys():
    from sim.config import (AccelConfig, ArrayConfig, EngineConfig, accel_config_from,
                            accel_config_to_dict)

    config = AccelConfig(engine=EngineConfig(array=ArrayConfig(rows=4, cols=4)),
                         data_width=128, addr_width=64, reads_outstanding=2)
    assert accel_config_from(accel_config_to_dict(config)) == config
    with pytest.raises(ValueError, match="data_width must be one of 64, 128, 256"):
        accel_config_from({"data_width": 32})
    with pytest.raises(ValueError, match="unknown configuration key 'bus'"):
        accel_config_from({"bus": 64})
    with pytest.raises(ValueError, match="array.rows"):
        accel_config_from({"engine": {"array": {"rows": 0}}})
