"""``sparta report``: the documentation's numeric tables, generated from ``docs/results/``.

A page is either generated whole (a renderer registered with :func:`page`) or written by hand
with generated blocks in it::

    <!-- sparta-report: gemm.shapes -->
    | ... the table ... |
    <!-- /sparta-report -->

Each block's content is what the renderer registered under its name (:func:`block`) returns
from the results files; ``sparta report`` rewrites every page and block, ``sparta report
--check`` lists what differs (``tb/test_docs.py`` fails on any difference, and on any numeric
table outside a generated block). Renderers live in the modules of this package, one per
technique (:data:`MODULES`); they read results with :func:`results` and nothing else measures.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Callable, Iterable

from scripts.results import DOCS_DIR, RESULTS, dependency_order, load

__all__ = ["block", "page", "results", "table", "render", "check", "rewrite", "main",
           "numeric_tables", "DOCUMENTS"]

REPO = DOCS_DIR.parent
#: the renderer modules (imported when a report is made)
MODULES = ("flow", "tool", "gemm", "fp", "fgmp", "sparsity", "workloads", "accel", "dse",
           "schedule", "formal", "step_lists", "inference", "regress", "board")
#: every page that may hold numeric tables: docs/*.md and the README
DOCUMENTS = lambda: sorted(DOCS_DIR.glob("*.md")) + [REPO / "README.md"]  # noqa: E731

_BLOCKS: dict[str, Callable[[], str]] = {}
_PAGES: dict[str, Callable[[], str]] = {}
BEGIN = re.compile(r"^<!-- sparta-report: ([\w.\-]+) -->$")
END = "<!-- /sparta-report -->"


def block(name: str):
    """Register the renderer of the generated block ``name`` (a function returning Markdown)."""
    def register(function):
        if name in _BLOCKS:
            raise ValueError(f"two renderers for the block {name!r}")
        _BLOCKS[name] = function
        return function
    return register


def page(relative: str):
    """Register the renderer of a whole page (``docs/<relative>``)."""
    def register(function):
        if relative in _PAGES:
            raise ValueError(f"two renderers for the page {relative!r}")
        _PAGES[relative] = function
        return function
    return register


def results(name: str, **kwargs) -> dict:
    """A results file, for a renderer."""
    return load(name, reader="scripts.report", **kwargs)


def measured_at(provenance: dict | None) -> str:
    """Where a results key was measured, in words."""
    if not provenance:
        return "provenance not recorded"
    return (f"commit {provenance['commit'][:10]}"
            f"{' with uncommitted changes' if provenance.get('dirty') else ''}"
            f", {provenance['date']}")


def table(header: Iterable[str], rows: Iterable[Iterable], align: str | None = None) -> str:
    """A Markdown table; ``align``: one of ``l``, ``r``, ``c`` per column (default: first
    column left, the others right)."""
    header = [str(cell) for cell in header]
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(header):
            raise ValueError(f"a row of {len(cells)} cells under {len(header)} headings: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load_renderers():
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")


def _relative(path: Path) -> str:
    path = path.resolve()
    if path.parent == DOCS_DIR:
        return path.name
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _fill_blocks(text: str, where: str) -> str:
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        match = BEGIN.match(lines[i])
        out.append(lines[i])
        i += 1
        if not match:
            continue
        name = match.group(1)
        if name not in _BLOCKS:
            raise KeyError(f"{where}: no renderer for the block {name!r}")
        while i < len(lines) and lines[i] != END:
            i += 1
        if i == len(lines):
            raise ValueError(f"{where}: the block {name!r} has no {END}")
        out += [_BLOCKS[name]().rstrip("\n"), END]
        i += 1
    return "\n".join(out)


def render(path: Path) -> str:
    """What ``path`` should contain."""
    _load_renderers()
    relative = _relative(path)
    if relative in _PAGES:
        return _PAGES[relative]().rstrip("\n") + "\n"
    return _fill_blocks(path.read_text(), relative)


def check(paths: Iterable[Path] | None = None) -> list[str]:
    """The pages that differ from what the results give (empty: all up to date)."""
    return [_relative(path) for path in (paths or DOCUMENTS())
            if render(path) != path.read_text()]


def write(paths: Iterable[Path] | None = None) -> list[str]:
    changed = []
    for path in paths or DOCUMENTS():
        text = render(path)
        if text != path.read_text():
            path.write_text(text)
            changed.append(_relative(path))
    return changed


def rewrite(*pages: str) -> list[str]:
    """Regenerate the pages ``docs/<page>`` of a measurement that was just recorded, printing
    each one that changed; returns them."""
    written = write([DOCS_DIR / page for page in pages])
    for page in written:
        print(f"wrote {page}")
    return written


_NUMBER = re.compile(r"^[+\-−~≈<>≤≥]*\s*\d[\d,]*(\.\d+)?\s*(%|x|×|s|ms|us|ns|MHz|B|KiB|MiB|k|M|"
                     r"pJ|nJ|uJ|µJ|mJ|cycles|LUT|FF)?$")


def _numeric(cell: str) -> bool:
    return bool(_NUMBER.match(re.sub(r"[*_`]", "", cell).strip()))


def numeric_tables(path: Path) -> list[int]:
    """Line numbers (1-based) of the Markdown tables of a hand-written page that have a numeric
    cell outside a generated block (a generated page has none by construction)."""
    _load_renderers()
    if _relative(path) in _PAGES:
        return []
    found, inside, start = [], False, None
    lines = path.read_text().split("\n")
    for number, line in enumerate(lines, 1):
        if BEGIN.match(line):
            inside = True
        elif line == END:
            inside = False
        is_row = line.startswith("|")
        if is_row and start is None:
            start = number
        if not is_row:
            start = None
        if is_row and not inside and start != number and not re.match(r"^\|[\s:\-|]+\|$", line):
            if any(_numeric(cell) for cell in line.strip().strip("|").split("|")):
                if not found or found[-1] != start:
                    found.append(start)
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="sparta report", description="regenerate the documentation's tables from "
        "docs/results/ (pages generated whole, and the marked blocks of hand-written pages)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; list the pages that differ (exit status 1 if any)")
    parser.add_argument("--deps", action="store_true",
                        help="print the results files in an order their writers can run in, "
                             "with each one's writer, command and what it reads")
    args = parser.parse_args(argv)
    if args.deps:
        from scripts.results import READS
        for name in dependency_order():
            result = RESULTS[name]
            reads = READS.get(result.writer, ())
            print(f"{name:24} {result.command:44} {result.writer}"
                  + (f"  (reads {', '.join(reads)})" if reads else ""))
        return 0
    if args.check:
        stale = check()
        for relative in stale:
            print(f"out of date: {relative}")
        return 1 if stale else 0
    for relative in write():
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
