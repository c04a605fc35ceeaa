"""Pack and unpack port words with the hardware's own layouts (vectorised with numpy)."""

from __future__ import annotations

import numpy as np
from amaranth.lib import data

__all__ = ["fields", "pack", "pack_word", "unpack"]


def fields(layout) -> dict[str, tuple[int, int]]:
    """``{name: (offset, width)}`` of a struct layout (nested structs are flattened with '.')."""
    layout = data.Layout.cast(layout)
    out = {}
    for name, field in layout:
        inner = field.shape
        if isinstance(inner, data.StructLayout) or (isinstance(inner, type) and issubclass(inner, data.Struct)):
            for sub, (offset, width) in fields(inner).items():
                out[f"{name}.{sub}"] = (field.offset + offset, width)
        else:
            out[name] = (field.offset, field.width)
    return out


def pack(layout, **values) -> list[int]:
    """Pack arrays of field values into a list of Python ints (one port word each).

    Nested fields are given with ``__`` in place of ``.``: ``pack(L, a__exp=...)``. Missing
    fields are zero. Enum members may be given as their integer values.
    """
    geometry = fields(layout)
    size = data.Layout.cast(layout).size
    names = {key.replace("__", "."): key for key in values}
    unknown = set(names) - set(geometry)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; layout has {sorted(geometry)}")
    length = max(np.size(v) for v in values.values())
    words = [0] * length
    for name, key in names.items():
        offset, width = geometry[name]
        column = np.broadcast_to(np.asarray(values[key]).astype(np.uint64), (length,))
        if np.any(column >> np.uint64(width)) if width < 64 else False:
            raise ValueError(f"field {name!r} has values wider than {width} bits")
        for index, value in enumerate(column.tolist()):
            words[index] |= value << offset
    mask = (1 << size) - 1
    return [w & mask for w in words]


def pack_word(layout, **values) -> int:
    """One port word from Python ints, fields of any width (``pack`` stops at 64 bits);
    ``layout`` is a layout or its :func:`fields` geometry (computed once by a bench)."""
    geometry = layout if isinstance(layout, dict) else fields(layout)
    word = 0
    for name, value in values.items():
        offset, width = geometry[name]
        assert 0 <= int(value) < 1 << width, f"{name}={value} does not fit {width} bits"
        word |= int(value) << offset
    return word


def unpack(layout, words) -> dict[str, np.ndarray]:
    """Split port words (ints) into ``{field: uint64 array}`` (nested fields named with '.')."""
    words = [int(w) for w in words]
    return {
        name: np.array([(w >> offset) & ((1 << width) - 1) for w in words], dtype=np.uint64)
        for name, (offset, width) in fields(layout).items()
    }
