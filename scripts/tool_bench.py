"""Tool benchmark: what a user writes and waits for -> docs/results/tool.json (its only writer;
``docs/tool.md`` is made from it by ``sparta report``).

* per example network (``examples/``): lines of user code (the network file without blank
  lines, comments and docstrings) and the ``sparta`` commands that train, replay and measure it
  (each run here: it must succeed, and its wall time is recorded);
* ``sparta generate`` of the default engine: wall time with an empty build cache (elaboration)
  and again (from the elaboration cache).

Usage: python -m scripts.tool_bench [--epochs N]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import tokenize
from pathlib import Path

from scripts.progress import spinner
from scripts.report import write as write_report
from scripts.results import DOCS_DIR, record

__all__ = ["code_lines", "main"]

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = ("wine_mlp", "breast_cancer_mlp", "strided_cnn")


def code_lines(path: Path) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    source = path.read_text()
    docstring_lines, comment_lines = set(), set()
    previous = tokenize.INDENT
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING and previous in (tokenize.INDENT, tokenize.NEWLINE,
                                                          tokenize.DEDENT, tokenize.NL):
            docstring_lines.update(range(token.start[0], token.end[0] + 1))
        if token.type == tokenize.COMMENT:
            comment_lines.add(token.start[0])
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return sum(1 for number, line in enumerate(source.splitlines(), 1)
               if line.strip() and number not in docstring_lines
               and not (number in comment_lines and line.strip().startswith("#")))


def _sparta(args: list[str], env=None) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scripts.sparta", *args], cwd=REPO, check=True,
                   env=env, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - began, 2)


def measure_examples(epochs: int, work: Path) -> dict:
    out = {}
    for name in EXAMPLES:
        path = REPO / "examples" / f"{name}.py"
        file = ["--network-file", str(path)]
        commands = {
            "train": ["train", *file, "--epochs", str(epochs), "--out", str(work / "t.json")],
            "replay": ["replay", *file, "--preset", "4x4", "--out", str(work / "r.json")],
            "measure fgmp": ["measure", "fgmp", *file, "--epochs", str(epochs),
                             "--out", str(work / "f.json")],
            "measure skip": ["measure", "skip", *file, "--epochs", str(epochs),
                             "--out", str(work / "s.json")],
        }
        seconds = {}
        for label, args in commands.items():
            print(f"{name}: sparta {label} ...", flush=True)
            with spinner(f"{name}: sparta {label}"):
                seconds[label] = _sparta(args)
        out[name] = {"user_code_lines": code_lines(path), "commands": len(commands),
                     "command_lines": [
                         "sparta " + " ".join(a[:a.index("--out")]).replace(f"{REPO}/", "")
                         for a in commands.values()],
                     "wall_s": seconds}
    return out


def measure_generate(work: Path) -> dict:
    env = {**os.environ, "SPARTA_BUILD_DIR": str(work / "build")}
    args = ["generate", "--out", str(work / "generated")]
    cold = _sparta(args, env)
    warm = _sparta(args, env)
    return {"cold_s": cold, "warm_s": warm, "engine": "default (8x8 OS, 256 x 256 memories)",
            "source": "wall clock"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per example")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, not {args.epochs}")
    with tempfile.TemporaryDirectory(prefix="sparta-tool-") as work:
        work = Path(work)
        data = {"examples": measure_examples(args.epochs, work),
                "generate": measure_generate(work), "epochs": args.epochs,
                "note": ("wall_s of each command as run in this order with the machine's build "
                         "cache: the first replay includes elaborating and building the 4x4 "
                         "preset engine once; user_code_lines: the network file without blank "
                         "lines, comments and docstrings")}
    record("tool", data, writer=__name__, config={"epochs": args.epochs}, replace=True)
    write_report([DOCS_DIR / "tool.md"])
    for name, entry in data["examples"].items():
        print(f"{name}: {entry['user_code_lines']} lines of user code, {entry['commands']} "
              f"commands; wall {entry['wall_s']}")
    print(f"sparta generate: cold {data['generate']['cold_s']} s, warm "
          f"{data['generate']['warm_s']} s")
    print("wrote docs/results/tool.json and docs/tool.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
