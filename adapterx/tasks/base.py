"""What a task is: data, registered by name. Loading, encoding and scoring are looked up by head kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets

# A loader returns the raw rows of one split in one language. `data_dir`, when given, holds local copies of
# the data in the public dataset's own file format; otherwise the loader calls `datasets.load_dataset` with
# the public dataset id (which needs a reachable hub).
Loader = Callable[["DataRequest"], datasets.Dataset]


@dataclass(frozen=True)
class DataRequest:
    task: "Task"
    split: str  # "train" | "validation" | "test"
    language: str
    data_dir: Path | None = None


@dataclass(frozen=True)
class Task:
    """One task: a name, its languages, how to load it, its head and its metric."""

    name: str
    role: str  # "intermediate" | "target"
    head: str  # head kind, see adapterx.core.heads
    metric: str  # metric name, see adapterx.tasks.metrics
    loader: Loader
    languages: tuple[str, ...] = ("en",)  # languages with evaluation data
    train_language: str | None = "en"  # None: no training data (retrieval tasks)
    labels: tuple[str, ...] = ()  # label names; empty for span QA / retrieval
    text_fields: tuple[str, ...] = ()  # input fields, e.g. ("premise", "hypothesis")
    label_field: str = "label"
    splits: tuple[str, ...] = ("train", "validation", "test")
    max_length: int = 128
    description: str = ""
    options: dict = field(default_factory=dict)  # head/processor-specific settings

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def trainable(self) -> bool:
        return self.train_language is not None
