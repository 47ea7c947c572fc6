"""Saved setups side by side, outside a recipe (``adapterx evaluate``): each setup (one or more saved adapter
directories, one per seed) in each deployment form, scored per language, summarised over seeds with the benefit
over the first setup. The same evaluation, forms and statistics as a recipe's study, for adapters trained by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterxError
from adapterx.deploy.forms import DEPLOYMENT_FORMS, check_evaluable, deployed
from adapterx.deploy.setup import FUSION
from adapterx.store import check_fits_task, read_metadata
from adapterx.study.evaluate import evaluate_languages, primary_metric
from adapterx.study.summary import summarize_scores
from adapterx.tasks.base import Task
from adapterx.training.strategies import STRATEGIES, modules_at_inference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """What to score: the split, the languages (None: all of the task's), the data and the statistics."""

    split: str = "test"
    languages: list[str] | None = None
    data_dir: str | Path | None = None
    limit: int | None = None
    bootstrap: int = 1000
    confidence: float = 0.95


def setup_modules(adapter_dir: Path) -> tuple[str, int]:
    """(strategy, adapter modules run unmerged) of a saved target, from its adapterx.json: what it was trained by
    and on how many intermediate adapters (a fusion layer is not an intermediate adapter)."""
    metadata = read_metadata(adapter_dir)
    strategy = metadata.get("training", {}).get("strategy", "none")
    if strategy not in STRATEGIES:  # e.g. a multi-task intermediate adapter evaluated on its own
        return strategy, 1
    n = sum(1 for r in metadata.get("requires", []) if r.get("role") != FUSION)
    return strategy, modules_at_inference(strategy, max(1, n))


def compare_setups(
    backbone: Backbone,
    task: Task,
    setups: Mapping[str, Sequence[Path]],
    forms: Sequence[str],
    evaluation: Evaluation = Evaluation(),
    *,
    progress: bool = True,
) -> dict:
    """Score every setup (label -> adapter directories, one per seed) in every form; the first setup's first form
    is the baseline. Returns {task, split, metric, languages, baseline, rows, runs}: `rows` as a study's results
    (see adapterx.study.summary), `runs` the raw per-seed scores by "label/form"."""
    for form in forms:
        check_evaluable(form)
    runs: dict[tuple[str, str], list[dict]] = {}
    strategies: dict[str, tuple[str, int]] = {}
    skipped: list[str] = []
    for directories in setups.values():
        for directory in directories:  # every head fits the task before anything is scored
            check_fits_task(read_metadata(Path(directory)), Path(directory), task)
    for label, directories in setups.items():
        strategies[label] = setup_modules(Path(directories[0]))
        for form in forms:
            for directory in directories:  # several directories = several seeds of one setup
                model = deployed(backbone, Path(directory), form)
                if model is None:
                    skipped.append(
                        f"{label} ({read_metadata(Path(directory))['kind']}): form {form!r} needs "
                        f"{DEPLOYMENT_FORMS.get(form).needs}"
                    )
                    log.warning("%s; skipped", skipped[-1])
                    break
                runs.setdefault((label, form), []).append(
                    evaluate_languages(
                        model,
                        task,
                        backbone.tokenizer,
                        split=evaluation.split,
                        languages=evaluation.languages,
                        data_dir=evaluation.data_dir,
                        limit=evaluation.limit,
                        progress=progress,
                    )
                )
    if not runs:
        raise AdapterxError(f"nothing to evaluate in the forms {', '.join(forms)}: {'; '.join(skipped)}")
    return _table(task, runs, strategies, evaluation)


def _table(
    task: Task, runs: dict[tuple[str, str], list[dict]], strategies: dict[str, tuple[str, int]], evaluation: Evaluation
) -> dict:
    first_scores = next(iter(runs.values()))
    metric = primary_metric(next(iter(first_scores[0].values())))
    baseline = next(iter(runs))
    rows = []
    for (label, form), scores in runs.items():
        strategy, modules = strategies[label]
        rows.append(
            {
                "label": label,
                "strategy": strategy,
                "form": form,
                "modules_at_inference": DEPLOYMENT_FORMS.get(form).modules(modules),
                "seeds": len(scores),
                **summarize_scores(
                    scores,
                    runs[baseline] if (label, form) != baseline else None,
                    metric,
                    evaluation.bootstrap,
                    evaluation.confidence,
                ),
            }
        )
    return {
        "task": task.name,
        "split": evaluation.split,
        "metric": metric,
        "languages": list(first_scores[0]),
        "baseline": list(baseline),
        "rows": rows,
        "runs": {f"{label}/{form}": v for (label, form), v in runs.items()},
    }
