"""Reading task data from local files laid out as ``<root>/<task>/<split>.<language>.<ext>``."""

from __future__ import annotations

from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError


def available(root: Path, task: str) -> list[str]:
    folder = root / task
    return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def find_file(root: Path, task: str, split: str, language: str, extensions: tuple[str, ...]) -> Path:
    """The file for (split, language); a clear error listing what exists when it is missing."""
    for ext in extensions:
        path = root / task / f"{split}.{language}.{ext}"
        if path.is_file():
            return path
    present = available(root, task)
    raise AdapterxError(
        f"no {split!r} data for task {task!r} in language {language!r}: expected "
        f"{root / task}/{split}.{language}.{{{','.join(extensions)}}}; present: {', '.join(present) or 'nothing'}"
    )


def load_jsonl(path: Path) -> datasets.Dataset:
    """One split from a JSON-lines file, through `datasets` (as the public JSON datasets are loaded)."""
    try:
        return datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parse errors in several types
        raise AdapterxError(f"{path}: cannot be read as JSON lines: {exc}") from exc
