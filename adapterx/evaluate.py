"""Zero-shot cross-lingual evaluation: one model, one task, every language; and the benefit table."""

from __future__ import annotations

from pathlib import Path

import datasets
from tqdm.auto import tqdm

from adapterx.model import AdaptedModel
from adapterx.tasks.base import Task
from adapterx.tasks.processing import evaluate_language, evaluate_on_split


def evaluate_split(model: AdaptedModel, task: Task, rows: datasets.Dataset, tokenizer,
                   batch_size: int = 64) -> dict[str, float]:
    """Score `model` on raw `rows` of `task` with the task's metric (any head kind)."""
    return evaluate_on_split(model, task, rows, tokenizer, batch_size=batch_size)


def evaluate_languages(model: AdaptedModel, task: Task, tokenizer, *, split: str = "test",
                       languages: list[str] | None = None, data_dir: str | Path | None = None,
                       limit: int | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    """Per-language scores of `task` (all its languages unless `languages` narrows them)."""
    results = {}
    for language in tqdm(languages or list(task.languages), desc=f"evaluate {task.name}", disable=not progress,
                         leave=False):
        results[language] = evaluate_language(model, task, tokenizer, split, language, data_dir=data_dir,
                                              limit=limit)
    return results


def primary_metric(scores: dict[str, float]) -> str:
    """The metric a table reports when several are computed (first key, e.g. 'accuracy' or 'f1')."""
    return next(iter(scores))


def language_average(per_language: dict[str, dict[str, float]]) -> float:
    """XTREME-style average: the unweighted mean over languages of the primary metric."""
    values = [scores[primary_metric(scores)] for scores in per_language.values()]
    return sum(values) / len(values)


def merged_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active LoRA adapters folded into the base weights (None if one cannot be merged):
    the deployment form with no adapter modules left at inference."""
    from adapterx.merge import merge_into_base
    return _plain_form(model, "merged", lambda names: merge_into_base(model, names))


def fused_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active LoRA adapters run as ONE low-rank product per layer (A and B factors
    concatenated, adapterx.fastlora) on a plain copy of the base: a stack of k adapters costs one rank-k·r LoRA,
    with no peft loop over adapters. None if an active adapter is not LoRA."""
    from adapterx import fastlora
    from adapterx.merge import collect_lora_factors, plain_base_copy
    return _plain_form(model, "fused", lambda names: fastlora.apply_fused_lora(plain_base_copy(model),
                                                                             collect_lora_factors(model, names)))


def _plain_form(model: AdaptedModel, what: str, build) -> AdaptedModel | None:
    """A new AdaptedModel whose encoder is `build(active adapter names)` (a plain module holding the adapters'
    effect) and whose head is a copy of `model`'s active head."""
    import copy

    from adapterx.backbone import Backbone, fingerprint_tensors, freeze
    from adapterx.methods import get_method

    names = list(model.active_adapters)
    if not names or not all(get_method(model.adapters[n].kind).mergeable for n in names):
        return None
    encoder = build(names)
    freeze(encoder)
    tensors = dict(encoder.named_parameters())
    source = model.backbone
    backbone = Backbone(encoder, source.tokenizer, f"{source.name}+{what}({','.join(names)})", source.pretrained,
                        f"{source.description}; adapters {names} {what}", fingerprint_tensors(tensors), tensors)
    result = AdaptedModel(backbone)
    result.heads[model.active_head] = copy.deepcopy(model.head)
    result.set_head(model.active_head)
    return result.eval()
