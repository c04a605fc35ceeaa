"""Machine-readable results under docs/results/ (merged key by key, so that the area flow and
the simulation measurements can write the same file independently)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["RESULTS_DIR", "DOCS_DIR", "update_results"]

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
RESULTS_DIR = DOCS_DIR / "results"


def update_results(name: str, **entries) -> Path:
    """Set top-level ``entries`` in ``docs/results/<name>.json``; other keys are kept."""
    path = RESULTS_DIR / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(entries)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
