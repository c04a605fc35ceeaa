"""Amaranth enums built from the specification's Python enums (``sim.*_spec``), member by
member, so that a code added to the specification is one in the hardware: the engine's
``ErrorCode`` (:class:`sim.engine_spec.EngineError`) and the accelerator's
(:class:`sim.accel_spec.AccelError`)."""

import enum as py_enum
import types

from amaranth.lib import enum

__all__ = ["hardware_enum"]


def hardware_enum(spec: type[py_enum.IntEnum], *, name: str, module: str, shape: int,
                  doc: str) -> type[enum.Enum]:
    """An Amaranth :class:`~amaranth.lib.enum.Enum` of ``shape`` bits named ``name`` (as if
    defined in ``module``: the Verilog's enum attributes carry the name) with the members of
    ``spec``. A value that does not fit ``shape`` makes Amaranth warn (an error in the tests)."""
    def body(namespace):
        namespace["__module__"] = module
        namespace["__qualname__"] = name
        namespace["__doc__"] = doc
        for member in spec:
            namespace[member.name] = member.value

    return types.new_class(name, (enum.Enum,), {"shape": shape}, body)
