"""Bottleneck adapter forms, built through adapterx.store like any served adapter (the adapters library swaps
module classes in place, so each form has its own share-copy of the base; the base form stays a plain
transformers model)."""

from __future__ import annotations

from adapterx.bench.adapted import adapted_model, adapter_form, random_weights
from adapterx.bench.forms import Form, FormContext, form
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec


def _bottleneck_model(ctx: FormContext, depth: int) -> AdaptedModel:
    spec = parse_spec({"kind": "bottleneck", "reduction_factor": ctx.reduction_factor})
    return adapted_model(ctx, spec, depth, random_weights(ctx.seed * 1000 + 500))


@form("bottleneck",
      help="one bottleneck adapter (adapters SeqBnConfig) on a copy of the base")
def _bottleneck(ctx: FormContext) -> Form:
    return adapter_form("bottleneck", f"one bottleneck adapter (SeqBn, reduction {ctx.reduction_factor}), adapters "
                        f"library", _bottleneck_model(ctx, 1))


@form(r"bottleneck-stack-(?P<k>\d+)",
      help="K bottleneck adapters in an adapters Stack")
def _bottleneck_stack(ctx: FormContext, k: int) -> Form:
    return adapter_form(f"bottleneck-stack-{k}", f"{k} bottleneck adapters in an adapters Stack",
                        _bottleneck_model(ctx, k))
