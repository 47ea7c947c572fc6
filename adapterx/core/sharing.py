"""Structural copies that share weight tensors: several models over one set of frozen base weights.

Adapter libraries change a model's modules in place (peft wraps linear layers, the adapters library swaps module
classes), so each adapted model needs its own module tree; its frozen base weights need not be copied. A copy made
here holds new modules around the *same* parameter and buffer tensors: a server keeps one base in memory however
many adapters it loads, and a benchmark compares forms over identical weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from adapterx.core.backbone import Backbone


def share_copy(model: nn.Module, clone: Callable[[str], bool] = lambda name: False) -> nn.Module:
    """A structural deep copy of `model` whose parameters and buffers are the *same tensors* as the
    original's, except those whose name `clone` accepts, which are copied (e.g. weights a merge will change)."""
    memo = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if not clone(name):
            memo[id(t)] = t
    return copy.deepcopy(model, memo)


def shared_backbone(backbone: Backbone) -> Backbone:
    """A Backbone over a `share_copy` of `backbone`'s (untouched) encoder: same name, fingerprint and tokenizer,
    its own modules, the same weight tensors. Adapters attached to it leave `backbone` and its other shared copies
    unchanged, as long as nothing writes into the base weights (they are frozen; merging copies first)."""
    if backbone.claimed:
        raise ValueError(f"backbone {backbone.name!r} already carries adapters; share the untouched one")
    model = share_copy(backbone.model)
    return Backbone(
        model,
        backbone.tokenizer,
        backbone.name,
        backbone.pretrained,
        backbone.description,
        backbone.fingerprint,
        dict(model.named_parameters()),
    )
