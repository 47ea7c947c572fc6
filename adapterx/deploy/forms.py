"""Deployment forms of a trained model for evaluation: `unmerged` (adapter modules active), `fused` (active
LoRA adapters as one low-rank product per layer, adapterx.deploy.fastlora) and `merged` (LoRA deltas folded
into the weights). Each form is a new AdaptedModel over a plain transformers encoder with a copy of the head.
"""

from __future__ import annotations

import copy

from adapterx.core.backbone import Backbone, fingerprint_tensors, freeze
from adapterx.core.model import AdaptedModel
from adapterx.deploy import fastlora
from adapterx.deploy.plain import collect_lora_factors, merge_into_base, plain_base_copy


def merged_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active LoRA adapters folded into the base weights (None if one cannot be merged):
    the deployment form with no adapter modules left at inference."""
    return _plain_form(model, "merged", lambda names: merge_into_base(model, names))


def fused_form(model: AdaptedModel) -> AdaptedModel | None:
    """The same model with its active LoRA adapters run as ONE low-rank product per layer (A and B factors
    concatenated, adapterx.deploy.fastlora) on a plain copy of the base: a stack of k adapters costs one rank-k·r LoRA,
    with no peft loop over adapters. None if an active adapter is not LoRA."""
    return _plain_form(model, "fused", lambda names: fastlora.apply_fused_lora(plain_base_copy(model),
                                                                             collect_lora_factors(model, names)))


def _plain_form(model: AdaptedModel, what: str, build) -> AdaptedModel | None:
    """A new AdaptedModel whose encoder is `build(active adapter names)` (a plain module holding the adapters'
    effect) and whose head is a copy of `model`'s active head."""
    names = list(model.active_adapters)
    if not names or not all(model.adapters[n].method.mergeable for n in names):
        return None
    encoder = build(names)
    freeze(encoder)
    tensors = dict(encoder.named_parameters())
    source = model.backbone
    backbone = Backbone(encoder, source.tokenizer, f"{source.name}+{what}({','.join(names)})", source.pretrained,
                        f"{source.description}; adapters {names} {what}", fingerprint_tensors(tensors), tensors)
    result = AdaptedModel(backbone)
    result.heads[model.active_head] = copy.deepcopy(model.head)
    result.set_head(model.active_head)
    return result.eval()
