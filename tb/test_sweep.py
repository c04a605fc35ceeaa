"""``sparta sweep`` (scripts/sweep.py) on Dask: the sweep file's errors, a small sweep on a
LocalCluster (cycle model, training runs of the digits MLP, synthesis from the cache), the
cache (a rerun computes nothing), a failing point and a failing workload, a sweep stopped
half-way and resumed, a worker killed mid-sweep, and the same sweep on a scheduler and two
workers started as separate processes (``--scheduler``)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from scripts import sweep  # noqa: E402
from sim.engine_model import EngineCommand, command_cycles  # noqa: E402

WORKLOAD_FILE = '''
from sim.nn import Network
from sim.nn.networks import digits_mlp


def build():
    raise ValueError("this network file is broken on purpose")


def load():
    raise ValueError("never reached")
'''


def _spec(tmp_path: Path, **extra) -> dict:
    broken = tmp_path / "broken_net.py"
    broken.write_text(WORKLOAD_FILE)
    return {"name": "test", "base": "4x4",
            "workloads": ["digits_mlp", "gemm:96x80x72", f"network:{broken}"],
            "measure": ["area", "cycles", "dram_bytes", "energy", "accuracy"],
            "grid": {"array": {"rows": [2, 40], "dataflow": ["os", "ws"]},
                     "numerics": ["fp16", "fgmp"]},
            "train": {"epochs": 1, "train_samples": 64}, **extra}


def _seed_area(spec, cache: Path) -> dict:
    """Synthesis results put in the cache by hand (the test runs no Yosys): the sweep must
    take them from there, keyed as it keys them."""
    stamp = {"source": sweep.source_digest(), "tools": sweep.tool_versions()}
    tasks, _ = sweep.plan(spec, stamp)
    seeded = {}
    for number, task in enumerate(t for t in tasks.values() if t.kind == "area"):
        result = {field: 1000 * (number + 1) + i for i, field in enumerate(sweep.AREA_FIELDS)}
        cache.mkdir(parents=True, exist_ok=True)
        (cache / f"{task.key}.json").write_text(json.dumps(
            {"key": task.key, "kind": "area", "inputs": task.inputs, "result": result,
             "error": None, "seconds": 0.0}))
        seeded[json.dumps(task.inputs["config"], sort_keys=True)] = result
    return seeded


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as local, Client(local) as client:
        yield local, client


def test_spec_errors(tmp_path, capsys):
    good = _spec(tmp_path)
    cases = [
        ({"colour": "red"}, "unknown keys ['colour']"),
        ({"base": "5x5"}, "base must be one of"),
        ({"workloads": ["alexnet"]}, "'alexnet' is not one of"),
        ({"workloads": ["gemm:4x4"]}, "gemm:MxNxK"),
        ({"workloads": ["network:/no/such.py"]}, "no such file"),
        ({"workloads": []}, "workloads must be a non-empty list"),
        ({"measure": ["area", "speed"]}, "measure must be a non-empty list"),
        ({"points": [{"array": {"rows": 2}}]}, "exactly one of [grid]"),
        ({"grid": {"array": {"rows": 2}}}, "grid.array.rows must be a non-empty list"),
        ({"train": {"epochs": 0}}, "train.epochs must be an integer >= 1"),
        ({"train": {"steps": 3}}, "train: unknown keys ['steps']"),
        ({"train": {"resnet18": {"epochs": 1}}}, "train: tables ['resnet18'] name no workload"),
        ({"set": {"numerics": "fgmp"}}, "set: numerics is a point key"),
        ({"set": {"array": {"dataflow": "diagonal"}}}, "array.dataflow"),
        ({"simulator": "modelsim"}, "simulator must be one of ['verilator', 'icarus']"),
        ({"measure": ["rtl_cycles"]}, "measure rtl_cycles runs gemm:MxNxK workloads only"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError) as error:
            sweep.parse_spec({**good, **change})
        assert message in str(error.value), (change, str(error.value))
    spec = sweep.parse_spec(good)
    # the grid's 8 points and the base (4x4, fp16), marked default; rows=40 makes points
    # whose configuration is invalid, kept with their error
    assert len(spec.points) == 9
    (default,) = [p for p in spec.points if p.default]
    assert (default.config.array.rows, default.config.array.dataflow,
            default.numerics) == (4, "os", "fp16")
    bad = [p for p in spec.points if p.error]
    assert len(bad) == 4 and all("array.rows must be an integer in 1..32, not 40" in p.error
                                 for p in bad)
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('name = "x"\nworkloads = ["digits_cnn"]\nmeasure = ["speed"]\n'
                        '[grid]\n"array.rows" = [2]\n')
    assert sweep.main([str(bad_file)]) == 2
    assert "measure must be a non-empty list" in capsys.readouterr().err
    fp8 = sweep.parse_spec({**good, "set": {"array": {"a_formats": ["e4m3"]}}})
    assert all("numerics 'fp16' needs fp16" in p.error or "numerics 'fgmp' needs" in p.error
               or "array.rows" in p.error for p in fp8.points)


def test_sweep_on_a_local_cluster(tmp_path, cluster):
    _, client = cluster
    spec = sweep.parse_spec(_spec(tmp_path))
    cache = tmp_path / "cache"
    seeded = _seed_area(spec, cache)
    stamp = {"source": sweep.source_digest(), "tools": sweep.tool_versions()}
    tasks, _ = sweep.plan(spec, stamp)
    first = sweep.run_sweep(spec, cache_dir=cache, client=client, log=lambda line: None)
    areas = sum(1 for t in tasks.values() if t.kind == "area")
    assert first.tasks == len(tasks) and first.from_cache == areas
    assert first.computed == len(tasks) - areas
    broken = [t for t in tasks.values() if "file" == t.inputs.get("workload", {}).get("kind")]
    assert first.failed_tasks == len(broken) > 0
    by = {(r["label"], r["workload"]): r for r in first.rows}
    for row in first.rows:
        if row["label"].startswith("array.rows=40"):
            assert "array.rows must be an integer in 1..32, not 40" in row["error"]
            assert row.get("cycles") is None
        elif row["workload"].startswith("network:"):
            assert "this network file is broken on purpose" in row["error"]
        else:
            assert row["error"] is None, row
    # every good row: its configuration's seeded area, its cycles as the model gives them
    from sim.config import engine_config_from
    from sim.nn.networks import build_network

    for row in first.rows:
        if row["error"]:
            continue
        point = next(p for p in spec.points if p.id == row["point"])
        config = sweep.config_to_dict(point.config)
        area = seeded[json.dumps(config, sort_keys=True)]
        assert {f: row[f] for f in sweep.AREA_FIELDS} == area
        timing = dataclasses.replace(engine_config_from(config), spad_width=4096,
                                     a_rows=65536, b_rows=65536, acc_width=4096, acc_rows=65536)
        if row["workload"] == "gemm:96x80x72":
            want = command_cycles(timing, EngineCommand(m=96, n=80, k=72))
            assert row.get("accuracy") is None
        else:
            want = sum(command_cycles(timing, EngineCommand(
                m=c.M, n=c.N, k=c.K, a_transpose=c.transpose_a, b_transpose=c.transpose_b,
                accumulate=c.accumulate)) for c in build_network("digits_mlp").commands(
                    batch_size=32))
            assert 0 <= row["accuracy"] <= 1 and row["dram_bytes"] > 0 and row["energy_pj"] > 0
        assert row["cycles"] == want
    # FGMP moves fewer bytes than fp16 for the same training step
    fp16 = by[("2x4 os s0 fp16+fp8 / fp16", "digits_mlp")]
    fgmp = by[("2x4 os s0 fp16+fp8 / fgmp", "digits_mlp")]
    assert fgmp["dram_bytes"] < fp16["dram_bytes"]
    # a rerun computes nothing but the failed tasks (failures are not cached)
    again = sweep.run_sweep(spec, cache_dir=cache, client=client, log=lambda line: None)
    assert again.computed == len(broken) and again.rows == first.rows

    # outputs: table, JSON, plots; the Pareto sets are computed from the rows
    document = sweep.write_outputs(spec, again, tmp_path / "out")
    assert (tmp_path / "out" / "sweep.csv").read_text().count("\n") == len(first.rows) + 1
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"] == first.rows
    assert [Path(p).name for p in document["plots"]] == ["pareto_digits_mlp.png",
                                                         "pareto_gemm_96x80x72.png"]
    front = document["pareto"]["digits_mlp"]["cycles_vs_lut"]
    good = [r for r in first.rows if r["workload"] == "digits_mlp" and not r["error"]]
    for r in good:     # nothing on the front is beaten by any point
        for p in front:
            assert not (r["ecp5_lut"] <= p["ecp5_lut"] and r["cycles"] <= p["cycles"] and
                        (r["ecp5_lut"], r["cycles"]) != (p["ecp5_lut"], p["cycles"]))
    assert {i for p in front for i in p["points"]} <= {r["point"] for r in good}
    assert all(p["label"] == sweep.summarize(p["labels"]) for p in front)


def test_sweep_resumes_and_survives_a_killed_worker(tmp_path, cluster):
    _, client = cluster
    data = _spec(tmp_path)
    data["workloads"] = ["digits_mlp"]
    data["measure"] = ["cycles", "accuracy"]
    data["grid"] = {"array": {"rows": [2, 3]}, "numerics": ["fp16", "fgmp", "e4m3", "e5m2"]}
    data["train"] = {"epochs": 1, "train_samples": 256}
    spec = sweep.parse_spec(data)
    reference = sweep.run_sweep(spec, cache_dir=tmp_path / "reference", client=client,
                                log=lambda line: None)
    assert reference.failed_tasks == 0 and reference.computed == reference.tasks
    rerun = sweep.run_sweep(spec, cache_dir=tmp_path / "reference", log=lambda line: None)
    assert rerun.computed == 0 and rerun.workers == 0 and rerun.rows == reference.rows

    # stopped after the first finished task (as by Ctrl-C): the rerun does only the rest
    def stop(done, total, _):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(spec, cache_dir=tmp_path / "resume", client=client, on_progress=stop,
                        log=lambda line: None)
    # what had finished is cached; what had not started never runs (a task still running
    # may finish and be cached in the meantime: the resumed run takes it from there)
    kept = len(list((tmp_path / "resume").glob("*.json")))
    resumed = sweep.run_sweep(spec, cache_dir=tmp_path / "resume", client=client,
                              log=lambda line: None)
    assert 1 <= kept < resumed.tasks and resumed.from_cache >= kept
    assert resumed.computed == resumed.tasks - resumed.from_cache >= 1
    assert resumed.failed_tasks == 0 and resumed.rows == reference.rows

    # a worker killed (SIGKILL) while it runs a task: its tasks run again elsewhere
    killed = []

    def kill(done, total, client_):
        if killed:
            return
        busy = [w for w, keys in client_.processing().items() if keys]
        if busy:
            pids = client_.run(os.getpid, workers=busy[:1])
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    survived = sweep.run_sweep(spec, cache_dir=tmp_path / "killed", client=client,
                               on_progress=kill, log=lambda line: None)
    assert killed, "no worker was busy after the first task: nothing was killed"
    # (a task the killed worker had finished and cached is taken from the cache when Dask
    # runs it again)
    assert survived.failed_tasks == 0 and survived.rows == reference.rows


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_sweep_on_a_scheduler_and_two_worker_processes(tmp_path, cluster):
    _, client = cluster
    data = _spec(tmp_path)
    data["workloads"] = data["workloads"][:2]
    data["measure"] = ["cycles", "dram_bytes"]
    spec_file = tmp_path / "sweep.toml"
    spec_file.write_text(_toml(data))
    local = sweep.run_sweep(sweep.load_spec(spec_file), cache_dir=tmp_path / "local",
                            client=client, log=lambda line: None)
    address_file = tmp_path / "scheduler.json"
    started = []
    try:
        started.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--dashboard-address", ":0", "--scheduler-file",
             str(address_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_for(address_file.exists, 60, "the scheduler")
        address = json.loads(address_file.read_text())["address"]
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                 "1", "--nworkers", "1", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address) as remote:
            remote.wait_for_workers(2, timeout=60)
        out = tmp_path / "out"
        assert sweep.main([str(spec_file), "--scheduler", address, "--out", str(out),
                           "--cache", str(tmp_path / "remote"), "--no-plots"]) == 0
        document = json.loads((out / "sweep.json").read_text())
        assert document["run"]["workers"] == 2 and document["run"]["computed"] == local.tasks
        assert document["rows"] == local.rows
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def _toml(data: dict) -> str:
    """The small subset of TOML these specs need."""
    def value(v):
        return json.dumps(v)

    lines = []
    tables = {}
    for key, v in data.items():
        if isinstance(v, dict):
            tables[key] = v
        else:
            lines.append(f"{key} = {value(v)}")
    for name, table in tables.items():
        flat = sweep._flat(table)
        lines.append(f"[{name}]")
        lines += [f'"{k}" = {value(v)}' for k, v in flat.items()]
    return "\n".join(lines) + "\n"


def test_rtl_cycles_of_a_gemm(tmp_path, cluster):
    """``rtl_cycles``: the GEMM on the generated engine (Icarus here), bit-exact and with the
    cycle model's cycles, or the task fails."""
    import numpy as np

    from tb.engine_api import model_cycles, workload_gemm

    from tb.engines import CONFIGS

    _, client = cluster
    # the 4x4 engine the engine benches build on Icarus too (one build for both)
    memories = {"spad_width": 32, "a_rows": 40, "b_rows": 36, "acc_width": 32, "acc_rows": 44}
    spec = sweep.parse_spec({"name": "rtl", "base": "4x4", "workloads": ["gemm:12x10x9"],
                             "measure": ["cycles", "rtl_cycles"], "simulator": "icarus",
                             "set": memories, "grid": {"array": {"rows": [4]}}})
    assert spec.points[0].config == CONFIGS["4x4"]
    run = sweep.run_sweep(spec, cache_dir=tmp_path / "cache", client=client,
                          log=lambda line: None)
    (row,) = run.rows
    assert row["error"] is None and row["default"]
    rng = np.random.default_rng(sweep.RTL_SEED)
    problem = workload_gemm(rng.standard_normal((12, 9)).astype(np.float32),
                            rng.standard_normal((9, 10)).astype(np.float32))
    (point,) = spec.points
    assert row["rtl_cycles"] == model_cycles(point.config, problem) > 0
