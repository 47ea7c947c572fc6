"""Bottleneck adapter forms (the adapters library), each on its own share-copy of the base: ``adapters.init``
swaps module classes, and the base form must stay a plain transformers model."""

from __future__ import annotations

import torch

from adapterx.bench.forms import Form, FormContext, form, plain_run, share_copy


def _bottleneck_model(ctx: FormContext, depth: int, stacked: bool):
    import adapters
    from adapters import SeqBnConfig
    from adapters.composition import Stack

    model = share_copy(ctx.base)
    adapters.init(model)
    names = [f"b{i}" for i in range(depth)]
    w = next(ctx.base.parameters())
    for i, name in enumerate(names):
        model.add_adapter(name, config=SeqBnConfig(reduction_factor=ctx.reduction_factor))
        gen = torch.Generator().manual_seed(ctx.seed * 1000 + 500 + i)
        with torch.no_grad():  # small random weights so the adapter changes the output
            for pname, p in model.named_parameters():
                if f".adapters.{name}." in pname:
                    p.data = (torch.randn(p.shape, generator=gen) * 0.02 if p.dim() > 1
                              else torch.zeros(p.shape)).to(w.device, w.dtype)
    model.set_active_adapters(Stack(*names) if stacked else names[0])
    model.to(w.device, w.dtype)
    return model


@form("bottleneck")
def _bottleneck(ctx: FormContext) -> Form:
    return Form("bottleneck", f"one bottleneck adapter (SeqBn, reduction {ctx.reduction_factor}), adapters library",
                _bottleneck_model(ctx, 1, stacked=False), plain_run)


@form(r"bottleneck-stack-(?P<k>\d+)")
def _bottleneck_stack(ctx: FormContext, k: int) -> Form:
    return Form(f"bottleneck-stack-{k}", f"{k} bottleneck adapters in an adapters Stack",
                _bottleneck_model(ctx, k, stacked=True), plain_run)
