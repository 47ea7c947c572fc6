"""`Registry`: things found by name (adapter kinds, tasks, heads, metrics, strategies, deployment forms,
composition modes, bench forms), one type for all of them.

Why one type: every table answers the same questions the same way -- what exists (for CLI choices and --help),
an unknown name is an `UnknownNameError` that lists what exists and suggests the closest names, and an entry can
come from outside the package. An entry is

- registered directly: ``REGISTRY.register("name", obj)`` or ``@REGISTRY.register("name")``;
- lazy: ``REGISTRY.register_lazy("name", "package.module:attr")``, imported on first use, so that listing names
  imports nothing heavy;
- a built-in: the modules named in ``modules=`` (or a ``loader=`` function) are imported on first use; they
  register their entries as they load (they import the registry, so the registry cannot import them up front);
- a plugin: each Python entry point of the registry's ``group`` (e.g. ``adapterx.tasks``) is a lazy entry of the
  entry point's name. ``mytask = mypkg.tasks:TASK`` names the object itself; ``mytask = mypkg.tasks`` names a
  module whose import registers ``mytask``. Entry points are read once, on the first lookup.

A command's ``--plugins`` and a recipe's ``plugins:`` name modules that register entries when imported; see
`adapterx.core.plugins`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Generic, TypeVar

from adapterx.core.errors import AdapterxError, unknown

T = TypeVar("T")
log = logging.getLogger(__name__)


class _Lazy:
    """A placeholder for an entry not imported yet: ``"module:attr"`` (an object) or ``"module"`` (a module whose
    import registers the name)."""

    def __init__(self, target: str, origin: str):
        self.target, self.origin = target, origin

    def __repr__(self) -> str:
        return f"<lazy {self.target} from {self.origin}>"


def resolve(target: str, where: str = "") -> object:
    """The object ``"package.module:attr.sub"`` names (or the module, without ``:attr``); a clear error if the
    module cannot be imported or has no such attribute."""
    module_name, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise AdapterxError(f"{where or target}: cannot import {module_name!r}: {exc}") from exc
    for part in filter(None, attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AdapterxError(f"{where or target}: {module_name!r} has no attribute {attr!r}") from exc
    return obj


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The installed distributions' entry points of `group` (a function so that tests can replace it)."""
    return list(metadata.entry_points(group=group))


class Registry(Generic[T]):
    """Named entries of one sort. `what` names the sort in errors ("adapter kind", "task", ...)."""

    def __init__(
        self,
        what: str,
        *,
        group: str | None = None,
        modules: Sequence[str] = (),
        loader: Callable[[], None] | None = None,
        coerce: Callable[[object], T] | None = None,
    ):
        self.what, self.group = what, group
        self._modules, self._loader = tuple(modules), loader
        self._coerce = coerce
        self._entries: dict[str, T | _Lazy] = {}
        self._loaded = False

    # ------------------------------------------------------------------------------------------ registering
    def register(self, name: str, obj: T | None = None, *, replace: bool = False):
        """Add `obj` as `name`; without `obj`, a decorator that adds what it decorates and returns it."""
        if obj is None:

            def decorate(item: T) -> T:
                self.register(name, item, replace=replace)
                return item

            return decorate
        current = self._entries.get(name)
        if current is not None and not replace and not isinstance(current, _Lazy):
            raise AdapterxError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = self._coerce(obj) if self._coerce else obj
        return obj

    def register_lazy(self, name: str, target: str, *, origin: str = "", replace: bool = False) -> None:
        """Add `name` as ``"module:attr"`` (or ``"module"``), imported when it is first looked up."""
        if name in self._entries and not replace:
            raise AdapterxError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = _Lazy(target, origin or target)

    def unregister(self, name: str) -> None:
        """Remove `name` (tests that register a toy entry clean up with this)."""
        self._entries.pop(name, None)

    # ------------------------------------------------------------------------------------------ looking up
    def get(self, name: str) -> T:
        """The entry `name`; an `UnknownNameError` listing the known names (closest first) if there is none."""
        self._load()
        if name not in self._entries:
            raise unknown(self.what, name, self._entries)
        entry = self._entries[name]
        if isinstance(entry, _Lazy):
            entry = self._materialise(name, entry)
        return entry

    def _materialise(self, name: str, lazy: _Lazy) -> T:
        obj = resolve(lazy.target, f"{self.what} {name!r} ({lazy.origin})")
        if ":" not in lazy.target:  # a module: its import had to register the name itself
            registered = self._entries.get(name)
            if registered is lazy or registered is None:
                raise AdapterxError(
                    f"{self.what} {name!r} ({lazy.origin}): importing {lazy.target!r} registered "
                    f"no {self.what} of that name"
                )
            obj = registered
            return obj if not isinstance(obj, _Lazy) else self._materialise(name, obj)
        self._entries[name] = self._coerce(obj) if self._coerce else obj
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, in registration order (built-ins first, then plugins); imports nothing lazy."""
        self._load()
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs, lazy entries imported."""
        return [(name, self.get(name)) for name in self.names()]

    def values(self) -> list[T]:
        return [self.get(name) for name in self.names()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries) or 'not loaded'})"

    # ------------------------------------------------------------------------------------------ loading
    def _load(self) -> None:
        """Import the built-in modules, then read the plugins' entry points; once (a module being imported may
        look names up: it sees what is registered so far instead of recursing)."""
        if self._loaded:
            return
        self._loaded = True
        for module in self._modules:
            importlib.import_module(module)
        if self._loader is not None:
            self._loader()
        if self.group:
            self._load_entry_points()

    def _load_entry_points(self) -> None:
        for ep in entry_points(self.group):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an installed package"
            if ep.name in self._entries:
                log.warning(
                    "%s %r from %s (entry point group %s) is ignored: adapterx already has one of that name",
                    self.what,
                    ep.name,
                    dist,
                    self.group,
                )
                continue
            self._entries[ep.name] = _Lazy(ep.value, f"entry point {ep.name} = {ep.value} of {dist}")
