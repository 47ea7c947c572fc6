"""What every phase of a study run shares: names of the study's rows, the run's state and phase cache, and the
bench form that stands for each deployment (used by the runner and by the summary)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from adapterx.core.backbone import Backbone
from adapterx.methods import AdapterSpec, get_method
from adapterx.study.recipe import Recipe

log = logging.getLogger(__name__)
PHASE_FILE = "phase.json"
RESULTS_SCHEMA = 3
MULTITASK = "multitask"
BASELINE = "target-only"
NO_INTERMEDIATE = "no-intermediate"
FUSE = "fuse"     # the strategy over all intermediate adapters at once, and the job that runs it


@dataclass(frozen=True)
class Job:
    index: int
    name: str
    intermediate: str | None      # a task name, MULTITASK, or None for the baselines job


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

    @property
    def out(self) -> Path:
        return self.recipe.output

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
