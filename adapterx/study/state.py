"""What every phase of a study run shares: names of the study's rows, the run's state and phase cache, and the
bench form that stands for each deployment (used by the runner and by the summary)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from adapterx.core.backbone import Backbone
from adapterx.methods import AdapterSpec, get_method
from adapterx.study.design import BASELINE, FUSE, MULTITASK, NO_INTERMEDIATE, Job
from adapterx.study.recipe import Recipe

__all__ = [
    "BASELINE",
    "FUSE",
    "MULTITASK",
    "NO_INTERMEDIATE",
    "PHASE_FILE",
    "RESULTS_SCHEMA",
    "Job",
    "Phase",
    "RunState",
    "deployment_bench_form",
]

log = logging.getLogger(__name__)
PHASE_FILE = "phase.json"
RESULTS_SCHEMA = 4


@dataclass
class Phase:
    name: str
    key: str
    reused: bool = False
    seconds: float = 0.0


@dataclass
class RunState:
    recipe: Recipe
    backbone: Backbone
    force: bool
    progress: bool
    phases: list[Phase] = field(default_factory=list)
    trained: dict[tuple[str, int], Path] = field(default_factory=dict)  # (intermediate phase, seed) -> adapter

    @property
    def out(self) -> Path:
        return self.recipe.output

    @property
    def data_dir(self) -> Path | None:
        return Path(self.recipe.data_dir) if self.recipe.data_dir else None

    def cached(self, directory: Path, key: str) -> dict | None:
        marker = directory / PHASE_FILE
        if self.force or not marker.is_file():
            return None
        try:
            data = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return None
        return data if data.get("key") == key else None

    def log(self, message: str) -> None:
        """A progress message of the run (INFO: shown by default, hidden by `adapterx --quiet`)."""
        log.info(message)


def deployment_bench_form(spec: AdapterSpec, strategy: str, form: str) -> str | None:
    """The `adapterx bench` form that costs what this deployment costs at inference (None: not benchable), as the
    adapter's kind says (`Method.bench_form`)."""
    return get_method(spec.kind).bench_form(spec, strategy, form)
