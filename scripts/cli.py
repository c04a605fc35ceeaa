"""Command-line argument types shared by the scripts."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection

__all__ = ["comma_subset"]


def comma_subset(field: str, allowed: Collection[str], *, allow_empty: bool = False
                 ) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type``: a comma-separated list of distinct names from ``allowed``.

    Returns a tuple in the order given. An unknown or repeated name, or an empty list when
    ``allow_empty`` is false, raises ``argparse.ArgumentTypeError`` naming ``field`` and the
    allowed values.
    """
    choices = list(allowed)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(name for name in text.split(",") if name)
        if ((not names and not allow_empty) or len(set(names)) != len(names)
                or any(name not in choices for name in names)):
            raise argparse.ArgumentTypeError(f"{field} must be a comma-separated subset of "
                                             f"{choices}, not {text!r}")
        return names

    return parse
