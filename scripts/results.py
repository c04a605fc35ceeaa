"""Machine-readable results under ``docs/results/``: who writes each file, who may read it, and
where every figure came from.

Every results file has exactly one writer (:data:`RESULTS`): the script that measures it.
A script that needs another script's figures declares it (:data:`READS`), so the order in which
scripts must run is written down (``sparta report --deps`` prints it) and checked: :func:`load`
refuses an undeclared read. The documentation tables are generated from these files by
``sparta report`` (:mod:`scripts.report`), which reads them all.

Each top-level key records its provenance (:func:`provenance`): the commit, whether the tree had
uncommitted changes, the date, the machine's CPU count and a hash of the configuration it was
measured with (:func:`config_hash`).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["RESULTS_DIR", "DOCS_DIR", "RESULTS", "READS", "Result", "record", "load",
           "provenance", "config_hash", "dependency_order"]

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
RESULTS_DIR = DOCS_DIR / "results"


@dataclasses.dataclass(frozen=True)
class Result:
    """One results file: ``docs/results/<name>.json``, written by ``writer`` only; ``command``
    regenerates it."""
    name: str
    writer: str
    command: str


RESULTS: dict[str, Result] = {result.name: result for result in (
    Result("flow", "scripts.flow_bench", "sparta flow"),
    Result("tool", "scripts.tool_bench", "sparta measure tool"),
    Result("fp_area", "scripts.synth", "sparta synth"),
    Result("fp_units", "scripts.fp_report", "sparta measure fp"),
    Result("engine_area", "scripts.engine_report", "sparta area engine"),
    Result("gemm_bench", "scripts.gemm_bench", "sparta measure gemm"),
    Result("workloads", "scripts.train", "sparta train --net NET"),
    Result("sparsity_over_training", "scripts.train", "sparta train --net NET"),
    Result("replay", "scripts.replay", "sparta replay"),
    Result("fgmp_area", "scripts.fgmp_area", "sparta area fgmp"),
    Result("fgmp_bench", "scripts.fgmp_bench", "sparta measure fgmp --nets NET"),
    Result("fgmp_gap", "scripts.fgmp_gap", "sparta measure fgmp-gap analyse --net NET --record"),
    Result("sparsity_area", "scripts.sparsity_area", "sparta area sparsity"),
    Result("skip_area", "scripts.skip_area", "sparta area skip"),
    Result("skip_measure", "scripts.skip_measure", "sparta measure skip"),
    Result("sparsity_study", "scripts.sparsity_study", "sparta measure sparsity"),
    Result("accel_area", "scripts.accel_area", "sparta area accel"),
    Result("accel", "scripts.accel_bench", "sparta measure accel"),
    Result("dse", "scripts.dse_bench", "sparta measure dse"),
    Result("pruning", "scripts.prune", "sparta prune --nets NET"),
    Result("schedule", "scripts.schedule_bench", "sparta measure schedule"),
    Result("formal", "scripts.formal", "sparta formal"),
    Result("step_list_area", "scripts.step_list_area", "sparta area steps"),
    Result("schedule_rtl", "scripts.schedule_rtl", "sparta measure schedule-rtl"),
    Result("transposed", "scripts.transposed_bench", "sparta measure transposed"),
    Result("aip_area", "scripts.aip_area", "sparta area aip"),
    Result("inference", "scripts.inference_bench", "sparta measure inference"),
    Result("regress", "scripts.regress", "sparta regress"),
    Result("board", "scripts.bitstream", "make bitstream"),
)}

#: module -> the results files it reads (besides its own). ``scripts.report`` reads them all.
READS: dict[str, tuple[str, ...]] = {
    "scripts.demo": ("engine_area", "gemm_bench"),
    "scripts.skip_area": ("engine_area",),
    "scripts.skip_measure": ("skip_area",),
    "scripts.fgmp_bench": ("workloads",),
    "scripts.schedule_bench": ("pruning",),
    "scripts.schedule_rtl": ("pruning", "schedule"),
    "scripts.regress": ("formal",),
    "scripts.accel_bench": ("inference",),      # DrowsyNet's chosen plan
}

#: modules allowed to read every results file (they write none)
READ_ALL = ("scripts.report",)


def _module(name: str) -> str:
    """A module's name as imported: ``python -m scripts.x`` runs it as ``__main__``."""
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return spec.name if spec is not None else name
    return name


def _path(name: str) -> Path:
    if name not in RESULTS:
        raise KeyError(f"unknown results file {name!r}; known: {', '.join(sorted(RESULTS))}")
    return RESULTS_DIR / f"{name}.json"


def record(name: str, entries: dict, *, writer: str, config=None, replace: bool = False) -> Path:
    """Write ``entries`` (top-level keys) into ``docs/results/<name>.json``. ``writer`` is the
    calling module's ``__name__`` and must be the file's registered writer. Other keys are kept
    (a writer run per network adds its network's key) unless ``replace``. Each written key gets
    its provenance, with the hash of ``config`` (any JSON-able value, dataclass or enum: the
    configuration the figures were measured with)."""
    path, writer = _path(name), _module(writer)
    if RESULTS[name].writer != writer:
        raise PermissionError(f"docs/results/{name}.json is written by {RESULTS[name].writer} "
                              f"only, not {writer}")
    if "provenance" in entries:
        raise ValueError("'provenance' is recorded by record() itself")
    data = {} if replace or not path.exists() else json.loads(path.read_text())
    data.update(entries)
    where = provenance(config)
    data.setdefault("provenance", {}).update({key: where for key in entries})
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def load(name: str, *, reader: str, missing_ok: bool = False) -> dict:
    """The content of ``docs/results/<name>.json`` for the module ``reader`` (its ``__name__``),
    which must be its writer, declare it in :data:`READS`, or be a report. A missing file raises
    ``FileNotFoundError`` naming the command that makes it (or gives ``{}`` if ``missing_ok``)."""
    path, reader = _path(name), _module(reader)
    allowed = (reader == RESULTS[name].writer or name in READS.get(reader, ())
               or reader in READ_ALL or reader.startswith(tuple(m + "." for m in READ_ALL)))
    if not allowed:
        raise PermissionError(f"{reader} reads docs/results/{name}.json without declaring it: "
                              f"add it to scripts.results.READS[{reader!r}]")
    if not path.exists():
        if missing_ok:
            return {}
        raise FileNotFoundError(f"docs/results/{name}.json does not exist: run "
                                f"`{RESULTS[name].command}`")
    return json.loads(path.read_text())


def dependency_order() -> list[str]:
    """Results files in an order in which their writers can run (each after what it reads)."""
    needs = {name: {dep for dep in READS.get(result.writer, ()) if dep != name}
             for name, result in RESULTS.items()}
    order: list[str] = []
    while needs:
        ready = sorted(name for name, deps in needs.items() if deps <= set(order))
        if not ready:
            raise ValueError(f"cyclic result dependencies among {sorted(needs)}")
        order += ready
        for name in ready:
            del needs[name]
    return order


def _canonical(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"class": type(value).__qualname__,
                **{f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):   # numpy scalars
        return value.item()
    raise TypeError(f"cannot hash a configuration containing {type(value).__name__}: {value!r}")


def config_hash(config) -> str:
    """A short hash of a configuration (dataclasses, enums, dicts, lists, numbers, strings)."""
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(config=None) -> dict:
    """Where a measurement came from: commit, whether the tree had uncommitted changes (to
    anything but ``docs/``: results files and the pages generated from them are what
    measurements write, not what they measure), date (UTC), the machine's CPU count and, given
    the configuration, its hash."""
    root = DOCS_DIR.parent

    def git(*args):
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs")
    where = {"commit": git("rev-parse", "HEAD") or "unknown",
             "dirty": bool(status) if status is not None else None,
             "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "cpus": os.cpu_count()}
    if config is not None:
        where["config_hash"] = config_hash(config)
    return where
