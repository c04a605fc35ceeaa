"""Progress bars and spinners for the ``sparta`` commands (rich), shown on a terminal only.

A bar is drawn when standard error is a terminal (or ``SPARTA_PROGRESS=1``) and never with
``SPARTA_PROGRESS=0`` or ``CI`` set, so logs and pipes get plain output. Library code takes a
``progress`` callback (``sim.nn.train.train``) or is iterated here (:func:`track`); nothing in
``sim/`` or ``hw/`` imports this module.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["enabled", "track", "bar", "spinner"]

T = TypeVar("T")


def enabled() -> bool:
    setting = os.environ.get("SPARTA_PROGRESS", "")
    if setting in ("0", "1"):
        return setting == "1"
    return sys.stderr.isatty() and not os.environ.get("CI")


def _progress(*, spinner_only: bool = False):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if not spinner_only:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), transient=True)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items``, with a bar advancing by one per item."""
    if not enabled():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            progress.update(task, description=f"{description}: {item}"
                            if isinstance(item, str) else description)
            yield item
            progress.advance(task)


@contextlib.contextmanager
def bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A bar driven by a ``callback(done, total)`` (the ``progress`` argument of library
    calls such as :func:`sim.nn.train.train`)."""
    if not enabled():
        yield lambda done, total: None
        return
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda done, total: progress.update(task, completed=done, total=total)


@contextlib.contextmanager
def spinner(description: str) -> Iterator[None]:
    """A spinner with the elapsed time, around one long call (an RTL simulation, a synthesis)."""
    if not enabled():
        yield
        return
    with _progress(spinner_only=True) as progress:
        progress.add_task(description, total=None)
        yield
