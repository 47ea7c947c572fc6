"""Which saved adapters a server loads, and the names requests call them by.

A source is an adapter directory (it holds ``adapterx.json``), a directory holding adapters anywhere below it (an
artifacts directory of ``adapterx run``), or ``NAME=DIR`` for one adapter under a name of the user's choice. An
adapter found in an artifacts directory is named by its path there, without the ``adapters/`` and
``intermediate/`` levels and the final ``adapter/``: ``adapters/tiny-xnli/tiny-nli+stack/seed-0/adapter`` is
``tiny-xnli/tiny-nli+stack/seed-0``. Symbolic links are not followed while searching.

Hot-added adapters must lie under the server's adapter root: `inside_root` resolves a requested path (symbolic
links and ``..`` included) and refuses one that leaves the root.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from adapterx.core.errors import AdapterxError
from adapterx.serve.errors import Forbidden, NotFound, RequestError
from adapterx.store import METADATA_FILE

BASE = "base"  # the name of the bare encoder (no adapter) in requests; no adapter may take it
STACK = "+"  # "intermediate+target": a stack of adapters named in one request field
_SKIPPED = {"adapters", "intermediate"}  # levels of an artifacts directory left out of names
_NAME = re.compile(r"[A-Za-z0-9_.\-+/@:]+")


def check_name(name: str, where: str = "name") -> str:
    """`name` if requests can call an adapter by it (letters, digits, ``_.-+/@:``; not "base", no empty
    parts); else an error naming `where`."""
    if not name or not _NAME.fullmatch(name) or name == BASE or "" in name.split("/") or "" in name.split(STACK):
        raise RequestError(
            f"{where}: {name!r} cannot name an adapter (use letters, digits and _.-+/@:, no empty part between "
            f"'/' or '+'; {BASE!r} is the bare encoder)",
            param=where,
        )
    return name


def _is_adapter(directory: Path) -> bool:
    return (directory / METADATA_FILE).is_file()


def _found_name(root: Path, directory: Path) -> str:
    parts = list(directory.relative_to(root).parts)
    if parts and parts[-1] == "adapter":
        parts = parts[:-1]
    kept = [p for i, p in enumerate(parts) if not (p in _SKIPPED and i < len(parts) - 1)]
    return "/".join(kept) or root.name


def adapter_dirs(root: Path) -> list[Path]:
    """The adapter directories under `root` (itself included), not descending into an adapter's own directory
    (its parts, such as a fusion layer) and not following symbolic links."""
    if _is_adapter(root):
        return [root]
    found = []
    for current, subdirs, _ in os.walk(root, followlinks=False):
        here = Path(current)
        if _is_adapter(here):
            found.append(here)
            subdirs[:] = []
        else:
            subdirs.sort()
    return found


def discover(source: str | Path) -> list[tuple[str, Path]]:
    """(name, adapter directory) for every adapter `source` names (see the module docstring)."""
    text = str(source)
    name, sep, path_text = text.partition("=")
    if sep and not Path(text).exists():
        directory = Path(path_text)
        if not _is_adapter(directory):
            raise AdapterxError(f"{text}: {directory} is not an adapter directory (no {METADATA_FILE})")
        return [(check_name(name, text), directory)]
    root = Path(text)
    if not root.is_dir():
        raise AdapterxError(f"{text}: no such directory")
    if _is_adapter(root):
        return [(check_name(root.parent.name if root.name == "adapter" else root.name, text), root)]
    found = [(check_name(_found_name(root, d), str(d)), d) for d in adapter_dirs(root)]
    if not found:
        raise AdapterxError(f"{text}: no saved adapter (a directory with {METADATA_FILE}) under it")
    return found


def discover_all(sources: list[str | Path]) -> list[tuple[str, Path]]:
    """`discover` over every source; two adapters of one name are an error naming both directories."""
    seen: dict[str, Path] = {}
    for source in sources:
        for name, directory in discover(source):
            if name in seen and seen[name].resolve() != directory.resolve():
                raise AdapterxError(
                    f"two adapters are named {name!r}: {seen[name]} and {directory}; name one with NAME=DIR"
                )
            seen[name] = directory
    return list(seen.items())


def inside_root(path: str, root: Path | None, param: str = "path") -> Path:
    """The adapter directory `path` (relative to `root`, or absolute) if it lies under `root` once symbolic links
    and ``..`` are resolved; hot-adding from anywhere else is refused (403), as is hot-adding with no root."""
    if root is None:
        raise Forbidden("adding adapters while serving is off: start the server with --adapter-root DIR", param=param)
    real_root = Path(root).resolve()
    candidate = Path(path)
    resolved = (candidate if candidate.is_absolute() else real_root / candidate).resolve()
    if not resolved.is_relative_to(real_root):
        raise Forbidden(f"{param}: {path!r} lies outside the adapter root {real_root}", param=param)
    if not resolved.is_dir():
        raise NotFound(f"{param}: no directory {path!r} under the adapter root", param=param)
    if not _is_adapter(resolved):
        raise NotFound(f"{param}: {path!r} is not a saved adapter (no {METADATA_FILE})", param=param)
    return resolved
