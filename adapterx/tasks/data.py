"""Load a task's split in one language, checking the language and split exist first."""

from __future__ import annotations

from pathlib import Path

import datasets

from adapterx.core.errors import AdapterxError
from adapterx.core.validate import is_int
from adapterx.tasks.base import DataRequest, Task


def load_split(
    task: Task, split: str, language: str | None = None, data_dir: str | Path | None = None, limit: int | None = None
) -> datasets.Dataset:
    language = language or task.train_language or task.languages[0]
    if split == "train" and not task.trainable:
        raise AdapterxError(f"task {task.name!r} has no training data (it is evaluated without training)")
    if split not in task.splits:
        raise AdapterxError(f"task {task.name!r} has no split {split!r}; splits: {', '.join(task.splits)}")
    allowed = (task.train_language,) if split == "train" else task.languages
    if language not in allowed:
        raise AdapterxError(
            f"task {task.name!r} has no {split!r} data in language {language!r}; "
            f"languages: {', '.join(lang for lang in allowed if lang)}"
        )
    if limit is not None and (not is_int(limit) or limit < 1):
        raise AdapterxError(
            f"task {task.name!r}, split {split!r}: the row limit must be an integer >= 1, got {limit!r}"
        )
    rows = task.loader(DataRequest(task, split, language, Path(data_dir) if data_dir else None))
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    if len(rows) == 0:  # training would loop forever on it, evaluation divide by zero
        raise AdapterxError(
            f"task {task.name!r}, split {split!r} ({language}) has no rows "
            f"(limit {limit if limit is not None else 'none'}"
            f"{', data from ' + str(data_dir) if data_dir else ''})"
        )
    return rows
