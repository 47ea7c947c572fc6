"""Bottleneck adapter forms, built through adapterx.store like any served adapter (the adapters library swaps
module classes in place, so each form has its own share-copy of the base; the base form stays a plain
transformers model), and their fast forms: the same weights, read out by the kind's Method, as plain modules in
a plain share-copy (adapterx.deploy.fastbottleneck), no library hooks."""

from __future__ import annotations

from adapterx.bench.adapted import adapted_model, adapter_form, adapter_name, random_weights
from adapterx.bench.forms import Form, FormContext, form, plain_run, share_copy
from adapterx.core.model import AdaptedModel
from adapterx.deploy import fastbottleneck
from adapterx.methods import get_method, parse_spec


def _bottleneck_model(ctx: FormContext, depth: int) -> AdaptedModel:
    spec = parse_spec({"kind": "bottleneck", "reduction_factor": ctx.reduction_factor})
    return adapted_model(ctx, spec, depth, random_weights(ctx.seed * 1000 + 500))


@form("bottleneck", help="one bottleneck adapter (adapters SeqBnConfig) on a copy of the base")
def _bottleneck(ctx: FormContext) -> Form:
    return adapter_form(
        "bottleneck",
        f"one bottleneck adapter (SeqBn, reduction {ctx.reduction_factor}), adapters library",
        _bottleneck_model(ctx, 1),
    )


@form(r"bottleneck-stack-(?P<k>\d+)", help="K bottleneck adapters in an adapters Stack")
def _bottleneck_stack(ctx: FormContext, k: int) -> Form:
    return adapter_form(
        f"bottleneck-stack-{k}", f"{k} bottleneck adapters in an adapters Stack", _bottleneck_model(ctx, k)
    )


def _fast_model(ctx: FormContext, depth: int):
    """A plain share-copy of the base running the adapters of `_bottleneck_model` (same seeds, so the same
    weights) through adapterx.deploy.fastbottleneck."""
    library = _bottleneck_model(ctx, depth)
    weights = get_method("bottleneck").bottleneck_weights(library, [adapter_name(i) for i in range(depth)])
    return fastbottleneck.apply_fast_bottleneck(share_copy(ctx.base), weights)


@form(
    "bottleneck-fast",
    help="the same adapter as plain modules in a plain model (adapterx.deploy.fastbottleneck, no library hooks)",
)
def _bottleneck_fast(ctx: FormContext) -> Form:
    return Form(
        "bottleneck-fast",
        "the same bottleneck adapter as plain modules (adapterx.deploy.fastbottleneck, no library hooks)",
        _fast_model(ctx, 1),
        plain_run,
        reference="bottleneck",
    )


@form(
    r"bottleneck-stack-(?P<k>\d+)-fast",
    help="the same K adapters as one plain module per sub-layer, applied in order (fastbottleneck)",
)
def _bottleneck_stack_fast(ctx: FormContext, k: int) -> Form:
    return Form(
        f"bottleneck-stack-{k}-fast",
        f"the same {k} stacked adapters as one plain module per sub-layer (adapterx.deploy.fastbottleneck)",
        _fast_model(ctx, k),
        plain_run,
        reference=f"bottleneck-stack-{k}",
    )
