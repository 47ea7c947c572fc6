"""Zero-shot cross-lingual evaluation: one model, one task, every language; and the benefit table."""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from adapterx.core.log import show_progress
from adapterx.core.model import AdaptedModel
from adapterx.tasks.base import Task
from adapterx.tasks.processing import evaluate_language


def evaluate_languages(
    model: AdaptedModel,
    task: Task,
    tokenizer,
    *,
    split: str = "test",
    languages: list[str] | None = None,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Per-language scores of `task` (all its languages unless `languages` narrows them)."""
    results = {}
    for language in tqdm(
        languages or list(task.languages),
        desc=f"evaluate {task.name}",
        disable=not show_progress(progress),
        leave=False,
    ):
        results[language] = evaluate_language(model, task, tokenizer, split, language, data_dir=data_dir, limit=limit)
    return results


def primary_metric(scores: dict[str, float]) -> str:
    """The metric a table reports when several are computed (first key, e.g. 'accuracy' or 'f1')."""
    return next(iter(scores))


def language_average(per_language: dict[str, dict[str, float]]) -> float:
    """XTREME-style average: the unweighted mean over languages of the primary metric."""
    values = [scores[primary_metric(scores)] for scores in per_language.values()]
    return sum(values) / len(values)
