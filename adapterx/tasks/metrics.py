"""Metrics by name. Each takes predictions and references and returns named scores (0-100 scale, as XTREME
reports them). Add one with ``@register_metric("name")``."""

from __future__ import annotations

from typing import Callable, Sequence

from adapterx.errors import unknown

Metric = Callable[..., dict[str, float]]
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    def decorate(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn
    return decorate


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise unknown("metric", name, METRICS)
    return METRICS[name]


@register_metric("accuracy")
def accuracy(predictions: Sequence, references: Sequence) -> dict[str, float]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("accuracy of an empty set is undefined")
    correct = sum(int(p == r) for p, r in zip(predictions, references))
    return {"accuracy": 100.0 * correct / len(references)}
