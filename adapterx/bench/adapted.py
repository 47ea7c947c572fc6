"""Bench forms built the way adapterx serves an adapter: through `adapterx.store` and the kind's Method, on a
share-copy of the base, so the bench never touches an adapter library itself.

Every kind gets two generic forms: KIND (one adapter of the kind's default spec) and KIND-stack-K (K of them
active together, for kinds that stack), each with small random weights drawn from the bench seed. Kinds with
forms of their own (other specs, library-free fast paths) build them with the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adapterx import store
from adapterx.bench.forms import Batch, Form, FormContext, generic_form, plain_run, share_copy
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterxError
from adapterx.core.model import AdaptedModel
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
    """Adapter number i: every matrix N(0, 0.02²), every vector zero, drawn in float32 from (seed, i) in the
    order of the adapter's own tensors, so that the adapter changes the output a little."""

    def give(model: AdaptedModel, name: str, i: int) -> None:
        method = model.adapters[name].method
        gen = torch.Generator().manual_seed(seed + i)
        state = {
            k: torch.randn(t.shape, generator=gen) * 0.02 if t.dim() > 1 else torch.zeros(t.shape)
            for k, t in method.adapter_state(model, name).items()
        }
        method.load_adapter_state(model, name, state)

    return give


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
def _generic(ctx: FormContext, kind: str, k: int) -> Form:
    method = get_method(kind)
    if k > 1 and not method.stackable:
        raise AdapterxError(f"bench form {kind}-stack-{k}: {kind} adapters run alone, never stacked")
    model = adapted_model(ctx, method.spec_type(), k, random_weights(ctx.seed * 1000 + 900))
    what = f"{k} {kind} adapters active together" if k > 1 else f"one {kind} adapter"
    return adapter_form(
        f"{kind}-stack-{k}" if k > 1 else kind, f"{what} (default spec, random weights), through adapterx.store", model
    )
