"""The checks of a recipe's values that need more than its schema: ranges of every count and rate, the bench
block's settings, and the adapter spec against the backbone's shape (target modules it has, positions it has). `load_recipe` runs them, so ``--dry-run`` fails on
everything a run would fail on later, before the first phase.

Works on a loaded recipe object (adapterx.study.recipe.Recipe) without importing that module (it imports
this one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapterx.bench.config import CLOCKS
from adapterx.bench.runner import resolve_shape
from adapterx.core import validate as check
from adapterx.core.errors import AdapterxError, RecipeError
from adapterx.core.shape import backbone_shape
from adapterx.methods import get_method


def check_values(recipe: Any, path: Path) -> None:
    """Raise RecipeError naming the file and the field's dotted path for the first bad value."""
    try:
        _check(recipe)
    except RecipeError:
        raise
    except AdapterxError as exc:
        raise RecipeError(f"{path}: {exc}") from exc


def _check(recipe: Any) -> None:
    for i, seed in enumerate(recipe.seeds):
        check.count(seed, f"seeds[{i}]", minimum=0)
    for section in ("intermediate", "target"):
        check.optional_count(getattr(recipe, section).train_limit, f"{section}.train_limit")
    _check_evaluate(recipe)
    try:
        shape = backbone_shape(recipe.backbone)
    except AdapterxError as exc:
        raise AdapterxError(f"backbone: {exc}") from exc
    spec = recipe.adapter_spec
    get_method(spec.kind).check_backbone(spec, shape, "adapter")
    if recipe.bench.enabled:
        _check_bench(recipe)


def _check_evaluate(recipe: Any) -> None:
    e = recipe.evaluate
    check.optional_count(e.limit, "evaluate.limit")
    check.count(e.bootstrap, "evaluate.bootstrap")


def _check_bench(recipe: Any) -> None:
    b = recipe.bench
    check.count(b.iterations, "bench.iterations", minimum=3)  # p10/p90 of the per-round ratios
    check.count(b.warmup, "bench.warmup", minimum=0)
    check.count(b.threads, "bench.threads", minimum=0)
    check.choice(b.clock, "bench.clock", CLOCKS)
    check.counts(b.batch_sizes, "bench.batch_sizes")
    shape_name = b.shape or recipe.backbone
    try:
        backbone = resolve_shape(shape_name)[0]
        positions = backbone_shape(backbone).positions
    except AdapterxError as exc:
        raise AdapterxError(f"bench.shape: {exc}") from exc
    for length in check.counts(b.seq_lens, "bench.seq_lens", minimum=2):
        if length > positions:
            raise AdapterxError(
                f"bench.seq_lens: {length} tokens do not fit {shape_name}, which has {positions} positions"
            )
