"""Adapter kinds, registered by name in `METHODS`. A kind is one module in this package defining a spec dataclass
(subclass of `AdapterSpec`) and a `Method` subclass; every public module here is imported on first lookup and its
Method subclasses registered, so adding a kind is adding one file. A kind defined elsewhere (a plugin, a test)
joins with `register_method(cls)` (in a module a recipe lists under ``plugins:``, say) or through the
``adapterx.methods`` entry-point group (``toy = mypkg.toy:ToyMethod``)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from adapterx.core.errors import AdapterxError
from adapterx.core.registry import Registry
from adapterx.methods.base import AdapterSpec, Method


def _as_method(obj: object) -> Method:
    """A registered kind is a Method instance: a Method subclass with `kind` and `spec_type` set is instantiated
    (an entry point names the class)."""
    if isinstance(obj, Method):
        return obj
    if (
        not (isinstance(obj, type) and issubclass(obj, Method))
        or not getattr(obj, "kind", "")
        or not hasattr(obj, "spec_type")
    ):
        raise AdapterxError(f"register_method: {obj!r} is not a Method subclass with `kind` and `spec_type` set")
    return obj()


def _discover() -> None:
    """Import every public module of this package and register the Method subclasses it defines."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Method) and cls.__module__ == module.__name__ and getattr(cls, "kind", ""):
                METHODS.register(cls.kind, cls)


METHODS: Registry[Method] = Registry("adapter kind", group="adapterx.methods", loader=_discover, coerce=_as_method)


def register_method(cls: type[Method]) -> Method:
    """Register an adapter kind defined outside this package (its `Method` subclass, with `kind` and `spec_type`
    set); returns its instance. A kind of that name already registered is an error."""
    kind = getattr(cls, "kind", "")
    if kind in METHODS:
        raise AdapterxError(f"adapter kind {kind!r} is registered already ({type(METHODS.get(kind)).__module__})")
    METHODS.register(kind, _as_method(cls))
    return METHODS.get(kind)


def unregister_method(kind: str) -> None:
    """Forget a kind added by `register_method` (e.g. when a test that defined one ends)."""
    METHODS.get(kind)  # an unknown kind is an error that lists the known ones
    METHODS.unregister(kind)


def get_method(kind: str) -> Method:
    return METHODS.get(kind)


def kinds() -> list[str]:
    return sorted(METHODS.names())


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


__all__ = [
    "METHODS",
    "AdapterSpec",
    "Method",
    "get_method",
    "kinds",
    "parse_spec",
    "register_method",
    "spec_from_json",
    "unregister_method",
]
