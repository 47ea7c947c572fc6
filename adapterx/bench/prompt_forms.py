"""Prompt-learning forms: prompt tuning (virtual tokens at the input) and prefix tuning (virtual keys and values
in every layer), through adapterx.store (peft underneath). Their cost grows with the number of virtual tokens
N, so the form names carry it: prefix-16, prefix-32, prompt-16, ..."""

from __future__ import annotations

from adapterx.bench.adapted import adapted_model, adapter_form
from adapterx.bench.forms import Form, FormContext, form
from adapterx.methods import parse_spec


def _prompt_learning(ctx: FormContext, kind: str, n: int) -> Form:
    # the kind's own initialisation; the adapter is named like every bench adapter ("a0"): a name such as
    # "prompt" lies inside peft's parameter prefix "prompt_tuning_", which peft warns about
    model = adapted_model(ctx, parse_spec({"kind": kind, "num_virtual_tokens": n}), 1, weights=None)
    what = "virtual tokens prepended to the input" if kind == "prompt" else "virtual keys/values in every layer"
    return adapter_form(f"{kind}-{n}", f"{kind} tuning, {n} {what} (peft)", model)


@form(
    r"prefix-(?P<n>\d+)",
    help="prefix tuning with N virtual keys/values in every layer (peft; not mergeable)",
    spec=lambda n: parse_spec({"kind": "prefix", "num_virtual_tokens": n}),
)
def _prefix(ctx: FormContext, n: int) -> Form:
    return _prompt_learning(ctx, "prefix", n)


@form(
    r"prompt-(?P<n>\d+)",
    help="prompt tuning with N virtual input tokens (peft; not mergeable)",
    spec=lambda n: parse_spec({"kind": "prompt", "num_virtual_tokens": n}),
)
def _prompt(ctx: FormContext, n: int) -> Form:
    return _prompt_learning(ctx, "prompt", n)
