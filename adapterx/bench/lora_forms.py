"""LoRA forms: served through adapterx.store (peft underneath: the naive reference, unmerged, stacked and mixed
batch), merged into the weights, and adapterx.deploy.fastlora (fused stack, gathered mixed batch). Adapter
number i has the same weights in every form (drawn by `FormContext.lora_weights`), so the forms compute the
same function and only their speed differs. The lora-dora forms are the same adapters as DoRA (``use_dora``,
magnitudes as peft initialises them: the base weight's row norms), unmerged through peft, fused and merged."""

from __future__ import annotations

import torch
from torch import nn

from adapterx.bench.adapted import adapted_model, adapter_form, adapter_name, plain_form
from adapterx.bench.forms import Batch, Form, FormContext, form, plain_run, share_copy
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdaptedModel
from adapterx.deploy import fastlora
from adapterx.methods import get_method, parse_spec


def lora_model(ctx: FormContext, n: int, base: nn.Module | None = None, dora: bool = False) -> AdaptedModel:
    """An AdaptedModel over a share-copy of the base (or `base`) carrying LoRA adapters a0..a{n-1} (r, alpha=2r,
    the context's target modules, dropout 0; DoRA if `dora`) with the context's weights, all active."""
    spec = parse_spec(
        {
            "kind": "lora",
            "r": ctx.rank,
            "alpha": float(ctx.alpha),
            "dropout": 0.0,
            "target_modules": list(ctx.targets),
            "use_dora": dora,
        }
    )
    method = get_method("lora")

    def weights(model: AdaptedModel, name: str, i: int) -> None:
        method.set_lora_factors(model, name, {m: f[0] for m, f in lora_factors(ctx, [i]).items()})

    return adapted_model(ctx, spec, n, weights, base=base)


def lora_factors(ctx: FormContext, indices) -> dict[str, list[LoraFactors]]:
    """{module name: [LoraFactors of adapter i for i in indices]}, the same weights as the peft forms."""
    per_adapter = [ctx.lora_weights(i) for i in indices]
    return {name: [LoraFactors(w[name][0], w[name][1], ctx.scaling) for w in per_adapter] for name in per_adapter[0]}


@form("lora", help="one LoRA adapter through peft, unmerged (r, alpha=2r, query+value, dropout 0)")
def _lora(ctx: FormContext) -> Form:
    return adapter_form("lora", f"one LoRA (r={ctx.rank}, query+value) via peft, unmerged", lora_model(ctx, 1))


@form("lora-fast", help="the same adapter through adapterx.deploy.fastlora (no peft loop, casts or dropout module)")
def _lora_fast(ctx: FormContext) -> Form:
    model = fastlora.apply_fused_lora(share_copy(ctx.base), lora_factors(ctx, [0]))
    return Form("lora-fast", "the same LoRA via adapterx.deploy.fastlora, unmerged", model, plain_run, reference="lora")


@form("lora-merged", help="the same adapter merged into the weights (a plain model, no adapter code left)")
def _lora_merged(ctx: FormContext) -> Form:
    targets = tuple(f"{t}.weight" for t in ctx.targets)
    model = fastlora.merge_lora(share_copy(ctx.base, clone=lambda name: name.endswith(targets)), lora_factors(ctx, [0]))
    return Form(
        "lora-merged", "the same LoRA merged into the weights (a plain model, no adapter code left)", model, plain_run
    )


@form(r"lora-stack-(?P<k>\d+)", help="K LoRA adapters active together through peft (its Python loop over adapters)")
def _lora_stack(ctx: FormContext, k: int) -> Form:
    return adapter_form(
        f"lora-stack-{k}",
        f"{k} LoRA adapters active together via peft (loop over adapters)",
        lora_model(ctx, k),
        reference="lora" if k > 1 else None,
    )


@form(
    r"lora-stack-(?P<k>\d+)-fused", help="the same K adapters as ONE low-rank product (A and B concatenated, fastlora)"
)
def _lora_stack_fused(ctx: FormContext, k: int) -> Form:
    model = fastlora.apply_fused_lora(share_copy(ctx.base), lora_factors(ctx, range(k)))
    return Form(
        f"lora-stack-{k}-fused",
        f"the same {k} adapters fused into one rank-{k * ctx.rank} product (adapterx.deploy.fastlora)",
        model,
        plain_run,
        reference=f"lora-stack-{k}",
    )


def _row_adapters(n: int, batch_size: int) -> list[int]:
    return [j % n for j in range(batch_size)]


@form(
    r"lora-mixed-(?P<n>\d+)",
    help="a batch whose rows use N different LoRA adapters, peft adapter_names (sub-batch loop)",
)
def _lora_mixed(ctx: FormContext, n: int) -> Form:
    model = lora_model(ctx, n)
    method = get_method("lora")
    names_by_size: dict[int, list[str]] = {}

    def run(module: nn.Module, batch: Batch) -> torch.Tensor:
        names = names_by_size.get(batch.size)
        if names is None:
            names = names_by_size[batch.size] = [adapter_name(i) for i in _row_adapters(n, batch.size)]
        return method.encode_rows(model, batch.input_ids, batch.attention_mask, names, encoder=module)

    return Form(
        f"lora-mixed-{n}",
        f"rows use {n} different LoRA adapters, peft adapter_names (sub-batch loop)",
        model.encoder,
        run,
        reference="lora",
    )


@form(
    r"lora-mixed-(?P<n>\d+)-gathered", help="the same mixed batch as one gathered per-row low-rank product (fastlora)"
)
def _lora_mixed_gathered(ctx: FormContext, n: int) -> Form:
    model = fastlora.apply_gathered_lora(
        share_copy(ctx.base), lora_factors(ctx, range(n)), [adapter_name(i) for i in range(n)]
    )
    ids_by_size: dict[int, torch.Tensor] = {}

    def run(module: nn.Module, batch: Batch) -> torch.Tensor:
        ids = ids_by_size.get(batch.size)
        if ids is None:
            ids = ids_by_size[batch.size] = torch.tensor(_row_adapters(n, batch.size), device=batch.input_ids.device)
        return module(input_ids=batch.input_ids, attention_mask=batch.attention_mask, adapter_ids=ids).last_hidden_state

    return Form(
        f"lora-mixed-{n}-gathered",
        f"the same {n}-adapter mixed batch as one gathered per-row low-rank product (adapterx.deploy.fastlora)",
        model,
        run,
        reference="lora",
    )


# ----------------------------------------------------------------------------------------------- DoRA
@form("lora-dora", help="one DoRA adapter (LoRA with use_dora) through peft, unmerged (row norms every call)")
def _dora(ctx: FormContext) -> Form:
    return adapter_form(
        "lora-dora", f"one DoRA adapter (r={ctx.rank}) via peft, unmerged", lora_model(ctx, 1, dora=True)
    )


@form(r"lora-dora-stack-(?P<k>\d+)", help="K DoRA adapters active together through peft")
def _dora_stack(ctx: FormContext, k: int) -> Form:
    return adapter_form(
        f"lora-dora-stack-{k}",
        f"{k} DoRA adapters active together via peft",
        lora_model(ctx, k, dora=True),
        reference="lora-dora" if k > 1 else None,
    )


@form("lora-dora-fast", help="the same DoRA adapter as one plain module per layer (fastlora, norms folded once)")
def _dora_fast(ctx: FormContext) -> Form:
    model = lora_model(ctx, 1, dora=True)
    return plain_form(ctx, "lora-dora-fast", "the same DoRA adapter via fastlora", model, "fused", "lora-dora")


@form(r"lora-dora-stack-(?P<k>\d+)-fused", help="the same K DoRA adapters as one plain module per layer (fastlora)")
def _dora_stack_fused(ctx: FormContext, k: int) -> Form:
    model = lora_model(ctx, k, dora=True)
    name = f"lora-dora-stack-{k}-fused"
    return plain_form(ctx, name, f"the same {k} DoRA adapters via fastlora", model, "fused", f"lora-dora-stack-{k}")


@form("lora-dora-merged", help="the same DoRA adapter merged into the weights (a plain model)")
def _dora_merged(ctx: FormContext) -> Form:
    model = lora_model(ctx, 1, dora=True)
    return plain_form(ctx, "lora-dora-merged", "the same DoRA adapter merged into the weights", model, "merged", "")
