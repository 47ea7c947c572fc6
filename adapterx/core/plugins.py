"""Plugin modules: code that registers tasks, adapter kinds, forms ... when imported (``--plugins`` on the
command line, a recipe's ``plugins:``).

Importing a plugin runs its code, so where a name may come from is narrow on purpose: an installed module (one
found on ``sys.path``), or a file or package in a directory given explicitly as ``--plugins-dir``. The current
directory and a recipe's own directory are never searched by accident: ``python -m adapterx.cli`` puts the
current directory first on ``sys.path``, and a ``tasks.py`` lying beside a recipe would otherwise run when the
recipe names ``plugins: [tasks]`` (even under ``--dry-run``, which must import plugins to check the names they
register). To use a module from there, say so: ``--plugins-dir .``.

Every module imported here is remembered (`imported`), so that a worker process (``adapterx bench --train``) can
import the same plugins from the same files.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from adapterx.core.errors import AdapterxError

# module name -> the file it was imported from, for every plugin imported by this process
_IMPORTED: dict[str, str] = {}


def imported() -> dict[str, str]:
    """{module name: file} of the plugins this process imported (in order)."""
    return dict(_IMPORTED)


def _same(path: str, other: Path) -> bool:
    try:
        return Path(path or ".").resolve() == other
    except OSError:
        return False


@contextmanager
def _search_path(dirs: Sequence[Path], exclude: Sequence[Path]) -> Iterator[None]:
    """``sys.path`` while a plugin is imported: the `dirs` first, then ``sys.path`` without the current directory
    and the `exclude` directories (restored afterwards, whatever the import did to it meanwhile)."""
    saved = list(sys.path)
    avoid = [Path.cwd().resolve(), *(d.resolve() for d in exclude)]
    allowed = {d.resolve() for d in dirs}
    kept = [p for p in saved if not any(_same(p, a) for a in avoid if a not in allowed)]
    sys.path[:] = [str(d) for d in dirs] + [p for p in kept if not any(_same(p, d) for d in dirs)]
    try:
        yield
    finally:
        sys.path[:] = saved


def check_dirs(dirs: Iterable[str | Path], where: str) -> list[Path]:
    """The `--plugins-dir` directories as paths; a clear error for one that is not a directory."""
    out = []
    for d in dirs:
        path = Path(d).expanduser()
        if not path.is_dir():
            raise AdapterxError(f"{where}: {d} is not a directory")
        out.append(path.resolve())
    return out


def import_plugin(name: str, where: str, dirs: Sequence[Path] = (), exclude: Sequence[Path] = ()) -> ModuleType:
    """Import plugin module `name` (dotted names allowed) from the installed modules or the `dirs`; never from the
    current directory or the `exclude` directories (a recipe's own) unless they are among the `dirs`."""
    if not isinstance(name, str) or not name or not all(part.isidentifier() for part in name.split(".")):
        raise AdapterxError(f"{where}: a plugin is an importable module name (e.g. mypkg.tasks), got {name!r}")
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    with _search_path(dirs, exclude):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            searched = ", ".join(str(d) for d in dirs) or "no --plugins-dir"
            raise AdapterxError(
                f"{where}: cannot import plugin module {name!r}: {exc} (searched the installed modules and "
                f"{searched}; the current directory and a recipe's directory are searched only when given as "
                f"--plugins-dir)"
            ) from exc
    _IMPORTED[name] = getattr(module, "__file__", None) or ""
    return module


def import_plugins(
    names: Iterable[str], where: str, dirs: Sequence[Path] = (), exclude: Sequence[Path] = ()
) -> list[ModuleType]:
    """Import each plugin module (see `import_plugin`); an error names ``where[index]``."""
    if isinstance(names, str):
        raise AdapterxError(f"{where}: a list of module names, got the string {names!r}")
    return [import_plugin(n, f"{where}[{i}]", dirs, exclude) for i, n in enumerate(names)]


def import_file(name: str, file: str) -> ModuleType:
    """Import module `name` from `file` (a worker process re-importing a plugin its parent imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None or not os.path.isfile(file):
        raise AdapterxError(f"plugin module {name!r}: cannot load {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _IMPORTED[name] = file
    return module
