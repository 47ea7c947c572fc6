"""Adapter kinds, registered by name. A kind is one module in this package defining a spec dataclass
(subclass of `AdapterSpec`) and a `Method` subclass; every public module here is imported and its Method
subclasses registered, so adding a kind is adding one file. A kind defined elsewhere (a plugin, a test) joins
with `register_method`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from adapterx.core.errors import AdapterxError, unknown
from adapterx.methods.base import AdapterSpec, Method

_METHODS: dict[str, Method] = {}
_DISCOVERED: list[bool] = []


def _discover() -> None:
    if _DISCOVERED:
        return
    _DISCOVERED.append(True)
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Method) and cls.__module__ == module.__name__ and getattr(cls, "kind", ""):
                _METHODS.setdefault(cls.kind, cls())


def register_method(cls: type[Method]) -> Method:
    """Register an adapter kind defined outside this package (its `Method` subclass, with `kind` and `spec_type`
    set); returns its instance. A kind of that name already registered is an error."""
    _discover()
    kind = getattr(cls, "kind", "")
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not kind or not hasattr(cls, "spec_type"):
        raise AdapterxError(f"register_method: {cls!r} is not a Method subclass with `kind` and `spec_type` set")
    if kind in _METHODS:
        raise AdapterxError(f"adapter kind {kind!r} is registered already ({type(_METHODS[kind]).__module__})")
    _METHODS[kind] = cls()
    return _METHODS[kind]


def unregister_method(kind: str) -> None:
    """Forget a kind added by `register_method` (e.g. when a test that defined one ends)."""
    _discover()
    if kind not in _METHODS:
        raise unknown("adapter kind", kind, _METHODS)
    del _METHODS[kind]


def get_method(kind: str) -> Method:
    _discover()
    if kind not in _METHODS:
        raise unknown("adapter kind", kind, _METHODS)
    return _METHODS[kind]


def kinds() -> list[str]:
    _discover()
    return sorted(_METHODS)


def parse_spec(options: dict, where: str = "adapter") -> AdapterSpec:
    """An `AdapterSpec` from a mapping like ``{"kind": "lora", "r": 8}`` (as written in a recipe)."""
    if not isinstance(options, dict) or "kind" not in options:
        raise AdapterxError(f"{where}: needs a 'kind' field, one of {', '.join(kinds())}")
    rest = {k: v for k, v in options.items() if k != "kind"}
    if "target_modules" in rest and isinstance(rest["target_modules"], list):
        rest["target_modules"] = tuple(rest["target_modules"])
    return get_method(options["kind"]).spec_type.from_options(rest, where)


def spec_from_json(data: dict) -> AdapterSpec:
    return parse_spec(dict(data), where="adapterx.json spec")


__all__ = ["AdapterSpec", "Method", "get_method", "kinds", "parse_spec", "register_method", "spec_from_json",
           "unregister_method"]
