"""Prompt-learning forms: prompt tuning (virtual tokens at the input) and prefix tuning (virtual keys and values
in every layer), through adapterx's own methods (peft underneath). Their cost grows with the number of virtual
tokens N, so the form names carry it: prefix-16, prefix-32, prompt-16, ..."""

from __future__ import annotations

from adapterx import store
from adapterx.bench.forms import Batch, Form, FormContext, form, share_copy
from adapterx.core.backbone import Backbone
from adapterx.core.model import AdaptedModel
from adapterx.methods import parse_spec


def _prompt_learning(ctx: FormContext, kind: str, n: int) -> Form:
    base = share_copy(ctx.base)
    model = AdaptedModel(Backbone(base, None, "bench", pretrained=False, description="bench copy"))
    store.add_adapter(model, "prompt", parse_spec({"kind": kind, "num_virtual_tokens": n}))
    store.activate(model, ["prompt"])
    w = next(ctx.base.parameters())
    model.to(w.device, w.dtype)

    def run(module: AdaptedModel, batch: Batch):
        # encode() strips the virtual positions: the output has the input's length, as every other form's
        return module.encode(batch.input_ids, batch.attention_mask).last_hidden_state

    what = "virtual tokens prepended to the input" if kind == "prompt" else "virtual keys/values in every layer"
    return Form(f"{kind}-{n}", f"{kind} tuning, {n} {what} (peft)", model, run)


@form(r"prefix-(?P<n>\d+)")
def _prefix(ctx: FormContext, n: int) -> Form:
    return _prompt_learning(ctx, "prefix", n)


@form(r"prompt-(?P<n>\d+)")
def _prompt(ctx: FormContext, n: int) -> Form:
    return _prompt_learning(ctx, "prompt", n)
