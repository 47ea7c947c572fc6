"""LoRA forms: peft (the naive reference: unmerged, stacked, mixed batch, merged) and adapterx.deploy.fastlora
(fused stack, gathered mixed batch). Adapter number i has the same weights in every form, so the forms
compute the same function and only their speed differs."""

from __future__ import annotations

import torch
from torch import nn

from adapterx.bench.forms import Batch, Form, FormContext, form, freeze_eval, plain_run, share_copy
from adapterx.deploy import fastlora


def adapter_name(i: int) -> str:
    return f"a{i}"


def peft_model(ctx: FormContext, n: int, base: nn.Module | None = None):
    """A peft LoraModel over a share-copy of the base carrying adapters a0..a{n-1} (dropout 0)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=ctx.rank, lora_alpha=ctx.alpha, target_modules=list(ctx.targets), lora_dropout=0.0)
    model = get_peft_model(base if base is not None else share_copy(ctx.base), config, adapter_name=adapter_name(0))
    for i in range(1, n):
        model.add_adapter(adapter_name(i), config)
    inner = model.get_base_model()
    with torch.no_grad():
        for i in range(n):
            for mod_name, (a, b) in ctx.lora_weights(i).items():
                layer = inner.get_submodule(mod_name)
                layer.lora_A[adapter_name(i)].weight.copy_(a)
                layer.lora_B[adapter_name(i)].weight.copy_(b)
    w = next(ctx.base.parameters())
    model.to(w.device, w.dtype)
    freeze_eval(model)
    return model


def lora_factors(ctx: FormContext, indices) -> dict[str, list[fastlora.LoraFactors]]:
    """{module name: [LoraFactors of adapter i for i in indices]}, the same weights as the peft forms."""
    per_adapter = [ctx.lora_weights(i) for i in indices]
    return {name: [fastlora.LoraFactors(w[name][0], w[name][1], ctx.scaling) for w in per_adapter]
            for name in per_adapter[0]}


@form("lora")
def _lora(ctx: FormContext) -> Form:
    return Form("lora", f"one LoRA (r={ctx.rank}, query+value) via peft, unmerged", peft_model(ctx, 1), plain_run)


@form("lora-fast")
def _lora_fast(ctx: FormContext) -> Form:
    model = fastlora.apply_fused_lora(share_copy(ctx.base), lora_factors(ctx, [0]))
    return Form("lora-fast", "the same LoRA via adapterx.deploy.fastlora, unmerged", model, plain_run, reference="lora")


@form("lora-merged")
def _lora_merged(ctx: FormContext) -> Form:
    targets = tuple(f"{t}.weight" for t in ctx.targets)
    copy_ = share_copy(ctx.base, clone=lambda name: name.endswith(targets))
    model = peft_model(ctx, 1, base=copy_).merge_and_unload()
    return Form("lora-merged", "the same LoRA merged into the weights (peft merge_and_unload)", model, plain_run)


@form(r"lora-stack-(?P<k>\d+)")
def _lora_stack(ctx: FormContext, k: int) -> Form:
    model = peft_model(ctx, k)
    model.base_model.set_adapter([adapter_name(i) for i in range(k)])
    return Form(f"lora-stack-{k}", f"{k} LoRA adapters active together via peft (loop over adapters)",
                model, plain_run, reference="lora" if k > 1 else None)


@form(r"lora-stack-(?P<k>\d+)-fused")
def _lora_stack_fused(ctx: FormContext, k: int) -> Form:
    model = fastlora.apply_fused_lora(share_copy(ctx.base), lora_factors(ctx, range(k)))
    return Form(f"lora-stack-{k}-fused", f"the same {k} adapters fused into one rank-{k * ctx.rank} product "
                f"(adapterx.deploy.fastlora)", model, plain_run, reference=f"lora-stack-{k}")


def _row_adapters(n: int, batch_size: int) -> list[int]:
    return [j % n for j in range(batch_size)]


@form(r"lora-mixed-(?P<n>\d+)")
def _lora_mixed(ctx: FormContext, n: int) -> Form:
    model = peft_model(ctx, n)
    names_by_size: dict[int, list[str]] = {}

    def run(module: nn.Module, batch: Batch) -> torch.Tensor:
        names = names_by_size.get(batch.size)
        if names is None:
            names = names_by_size[batch.size] = [adapter_name(i) for i in _row_adapters(n, batch.size)]
        return module(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      adapter_names=names).last_hidden_state

    return Form(f"lora-mixed-{n}", f"rows use {n} different LoRA adapters, peft adapter_names (sub-batch loop)",
                model, run, reference="lora")


@form(r"lora-mixed-(?P<n>\d+)-gathered")
def _lora_mixed_gathered(ctx: FormContext, n: int) -> Form:
    model = fastlora.apply_gathered_lora(share_copy(ctx.base), lora_factors(ctx, range(n)),
                                         [adapter_name(i) for i in range(n)])
    ids_by_size: dict[int, torch.Tensor] = {}

    def run(module: nn.Module, batch: Batch) -> torch.Tensor:
        ids = ids_by_size.get(batch.size)
        if ids is None:
            ids = ids_by_size[batch.size] = torch.tensor(_row_adapters(n, batch.size), device=batch.input_ids.device)
        return module(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      adapter_ids=ids).last_hidden_state

    return Form(f"lora-mixed-{n}-gathered", f"the same {n}-adapter mixed batch as one gathered per-row "
                f"low-rank product (adapterx.deploy.fastlora)", model, run, reference="lora")
