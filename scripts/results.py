"""Machine-readable results under docs/results/ (merged key by key, so that the area flow and
the simulation measurements can write the same file independently; each key records the
commit it was measured at)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

__all__ = ["RESULTS_DIR", "DOCS_DIR", "update_results", "provenance"]

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
RESULTS_DIR = DOCS_DIR / "results"


def update_results(name: str, **entries) -> Path:
    """Set top-level ``entries`` in ``docs/results/<name>.json``; other keys are kept. Each
    entry's provenance (:func:`provenance`: commit, uncommitted changes, date) is recorded
    under ``provenance[<key>]``."""
    if "provenance" in entries:
        raise ValueError("'provenance' is recorded by update_results itself")
    path = RESULTS_DIR / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(entries)
    where = provenance()
    data.setdefault("provenance", {}).update({key: where for key in entries})
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def provenance() -> dict:
    """Where a measurement came from: commit, whether the tree had uncommitted changes, date
    (UTC) and the machine's CPU count."""
    root = DOCS_DIR.parent

    def git(*args):
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(status) if status is not None else None,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count()}
