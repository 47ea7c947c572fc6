"""Bench forms built the way adapterx serves an adapter: through `adapterx.store` and the kind's Method, on a
share-copy of the base, so the bench never touches an adapter library itself.

Every kind gets two generic forms: KIND (one adapter of the kind's default spec) and KIND-stack-K (K of them
active together, for kinds that stack), each with small random weights drawn from the bench seed (as the kind
says: `Method.bench_weights`). A mergeable kind also gets its plain forms: KIND-fast / KIND-stack-K-fused (its
weight changes as plain modules, adapterx.deploy.plain) and KIND-merged (folded into a copy of the weights).
Kinds with forms of their own (other specs) build them with the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adapterx import store
from adapterx.bench.forms import Batch, Form, FormContext, generic_form, plain_run, share_copy
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterxError
from adapterx.core.model import AdaptedModel
from adapterx.deploy.plain import apply_plain_layers, collect_weight_changes, merge_changes
from adapterx.methods import AdapterSpec, get_method

Weights = Callable[[AdaptedModel, str, int], None]  # (model, adapter name, adapter number) -> set its weights


def adapter_name(i: int) -> str:
    """The bench's adapter number i (short names: never inside an adapter library's parameter prefix)."""
    return f"a{i}"


def adapted_model(
    ctx: FormContext, spec: AdapterSpec, n: int, weights: Weights | None, base: torch.nn.Module | None = None
) -> AdaptedModel:
    """An AdaptedModel over a share-copy of the base (or `base`) carrying adapters a0..a{n-1} of `spec`, each
    given its weights by ``weights(model, name, i)`` (None: the kind's own initialisation), all active
    together, on the base's device and dtype."""
    encoder = base if base is not None else share_copy(ctx.base)
    model = AdaptedModel(Backbone(encoder, None, "bench", pretrained=False, description="bench copy"))
    names = [adapter_name(i) for i in range(n)]
    for i, name in enumerate(names):
        store.add_adapter(model, name, spec)
        if weights is not None:
            weights(model, name, i)
    store.activate(model, names)
    w = next(ctx.base.parameters())
    return model.to(w.device, w.dtype).eval()


def random_weights(seed: int) -> Weights:
    """Adapter number i: small random weights as its kind draws them (`Method.bench_weights`; by default every
    matrix N(0, 0.02²), every vector zero), in float32 from (seed, i) in the order of the adapter's own tensors,
    so that the adapter changes the output a little."""

    def give(model: AdaptedModel, name: str, i: int) -> None:
        method = model.adapters[name].method
        gen = torch.Generator().manual_seed(seed + i)
        method.load_adapter_state(model, name, method.bench_weights(method.adapter_state(model, name), gen))

    return give


def plain_form(ctx: FormContext, name: str, description: str, model: AdaptedModel, how: str, reference: str) -> Form:
    """The active adapters of `model` (a mergeable kind) as plain modules on a plain share-copy of the base
    (`how` "fused") or folded into a copy of the weights they change (`how` "merged")."""
    changes = collect_weight_changes(model, list(model.active_adapters))
    if how == "fused":
        return Form(name, description, apply_plain_layers(share_copy(ctx.base), changes), plain_run, reference)
    prefixes = tuple(f"{module}." for module in changes)
    plain = share_copy(ctx.base, clone=lambda tensor: tensor.startswith(prefixes))
    return Form(name, description, merge_changes(plain, changes), plain_run)


def adapter_form(name: str, description: str, model: AdaptedModel, reference: str | None = None) -> Form:
    """A form that runs the model's encoder with its active adapters. Kinds that put extra positions in front of
    the output (prompt tuning) run through `AdaptedModel.encode`, which drops them, so that every form's output
    has the input's length; all others call the encoder itself."""
    if sum(model.adapters[n].method.encoder_output_offset(model, n) for n in model.active_adapters):
        return Form(name, description, model, _encode_run, reference)
    return Form(name, description, model.encoder, plain_run, reference)


def _encode_run(module: AdaptedModel, batch: Batch) -> torch.Tensor:
    return module.encode(batch.input_ids, batch.attention_mask).last_hidden_state


@generic_form
def _generic(ctx: FormContext, kind: str, k: int, plain: str | None = None) -> Form:
    method = get_method(kind)
    unmerged = f"{kind}-stack-{k}" if k > 1 else kind
    if k > 1 and not method.stackable:
        raise AdapterxError(f"bench form {unmerged}: {kind} adapters run alone, never stacked")
    if plain and not method.mergeable:
        raise AdapterxError(
            f"bench forms {kind}-fast / -fused / -merged: {kind} adapters are not a weight change "
            f"({method.not_mergeable_reason or 'they cannot be merged'})"
        )
    model = adapted_model(ctx, method.spec_type(), k, random_weights(ctx.seed * 1000 + 900))
    what = f"{k} {method.name} adapters active together" if k > 1 else f"one {method.name} adapter"
    if plain == "fused":
        name = f"{unmerged}-fused" if k > 1 else f"{kind}-fast"
        return plain_form(ctx, name, f"{what}, as plain modules (no adapter library)", model, "fused", unmerged)
    if plain == "merged":
        return plain_form(ctx, f"{unmerged}-merged", f"{what}, merged into the weights", model, "merged", unmerged)
    return adapter_form(unmerged, f"{what} (default spec, random weights), through adapterx.store", model)
