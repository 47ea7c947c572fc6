"""A composition kept as one JSON manifest naming every part, its path and its files' digests (loose adapter
files with no record of how they were combined cannot be rebuilt later): written next to the parts or as a
self-contained directory with copies of them, and read back with every digest checked."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from adapterx import store
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterFileError, CompositionError
from adapterx.core.io import atomic_directory, atomic_write_json, read_json_file
from adapterx.deploy.compose.blocks import Block
from adapterx.deploy.compose.parts import Part

MANIFEST_FILE = "composition.json"
MANIFEST_FORMAT = "adapterx.composition"
MANIFEST_VERSION = 1


class Composed(Protocol):
    """What a manifest records of a composition (`ComposedModel` has it)."""

    backbone: Backbone
    composition: Block
    parts: dict[str, Part]
    head: str | None


def save_manifest(composed: Composed, path: str | Path, *, copy_parts: bool | None = None) -> Path:
    """Save the composition as one JSON manifest naming its parts, their paths and file digests.

    `path` ending in ``.json``: the manifest alone, pointing at the parts where they are (paths relative to
    the manifest). Otherwise a self-contained directory: ``PATH/composition.json`` plus a copy of every part
    under ``PATH/parts/<name>/`` (written atomically). `copy_parts` overrides the choice."""
    path = Path(path)
    copy = (path.suffix != ".json") if copy_parts is None else copy_parts
    if not copy:
        manifest = _manifest(composed, path.parent, {n: p.path for n, p in composed.parts.items()})
        atomic_write_json(path, manifest)
        return path
    with atomic_directory(path) as tmp:
        for n, p in composed.parts.items():
            shutil.copytree(p.path, tmp / "parts" / n)
        manifest = _manifest(composed, path, {n: path / "parts" / n for n in composed.parts})
        atomic_write_json(tmp / MANIFEST_FILE, manifest)
    return path / MANIFEST_FILE


def _manifest(composed: Composed, where: Path, locations: Mapping[str, Path]) -> dict:
    parts = []
    for n, p in composed.parts.items():
        location = Path(locations[n])
        rel = Path(_relative(location, where))
        parts.append(
            {
                "name": n,
                "path": rel.as_posix(),
                "kind": p.kind,
                "task": p.metadata.get("task"),
                "labels": p.labels,
                "files": {f.name: store.file_digest(f) for f in p.files()},
            }
        )
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "backbone": {"name": composed.backbone.name, "fingerprint": composed.backbone.fingerprint},
        "composition": composed.composition.to_dict(),
        "head": composed.head,
        "parts": parts,
        "library_versions": store.library_versions(),
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _relative(target: Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(target).resolve(), Path(base).resolve())
    except ValueError:  # another drive
        return str(Path(target).resolve())


def read_manifest(path: str | Path) -> tuple[dict, Path]:
    """The manifest's JSON and the directory its relative paths start from; checks presence and form."""
    path = Path(path)
    file = path / MANIFEST_FILE if path.is_dir() else path
    if not file.is_file():
        raise AdapterFileError(file, "no composition manifest here")
    data = read_json_file(file)
    if data.get("format") != MANIFEST_FORMAT:
        raise AdapterFileError(file, f"not an adapterx composition manifest (format {data.get('format')!r})")
    if data.get("format_version", 0) > MANIFEST_VERSION:
        raise AdapterFileError(file, f"format_version {data['format_version']} is newer than this adapterx reads")
    for key in ("backbone", "composition", "parts"):
        if key not in data:
            raise AdapterFileError(file, f"field {key!r} is missing")
    return data, file.parent


def checked_parts(data: dict, root: Path, path: str | Path) -> list[tuple[str, Path]]:
    """(name, directory) of every part of the manifest `data` (read from `path`, relative paths from `root`),
    after checking each recorded file against its digest."""
    parts: list[tuple[str, Path]] = []
    for entry in data["parts"]:
        location = Path(entry["path"])
        location = location if location.is_absolute() else root / location
        for filename, digest in entry.get("files", {}).items():
            file = location / filename
            if not file.is_file():
                raise AdapterFileError(file, f"missing (part {entry['name']!r} of the composition in {path})")
            actual = store.file_digest(file)
            if actual != digest:
                raise CompositionError(
                    f"{file}: changed since the composition {path} was saved (digest {actual}, "
                    f"manifest has {digest}); re-save the composition or restore the file"
                )
        parts.append((entry["name"], location))
    return parts
