"""Plain transformers encoders built from an adapted model: a copy of the frozen base, and the base with LoRA
deltas folded in. Shared by every deployment form that runs without an adapter library at inference (merged,
fused, gathered) and by the merge-then-train strategy, which trains on a merged base.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import AutoModel, PreTrainedModel

from adapterx.core.errors import CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdaptedModel
from adapterx.deploy import fastlora


def plain_base_copy(model: AdaptedModel) -> PreTrainedModel:
    """A plain transformers encoder (no peft, no adapters library) of the backbone's architecture holding copies
    of the frozen base weights."""
    config = type(model.backbone.model.config).from_dict(model.backbone.model.config.to_dict())
    plain = AutoModel.from_config(config, add_pooling_layer=False)
    state = {k: v.detach().clone() for k, v in model.backbone.base_tensors.items()}
    result = plain.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CompositionError(
            f"base weights do not fit a plain {type(plain).__name__}: missing "
            f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    return plain.to(device=model.device, dtype=model.backbone.model.dtype).eval()


def merge_into_base(model: AdaptedModel, names: Sequence[str]) -> PreTrainedModel:
    """A plain encoder whose linear weights include the low-rank deltas of `names` (W + Σ_i s_i B_i A_i, summed in
    float32); the model itself is left unchanged."""
    for n in names:
        method = model.adapters[n].method
        if not method.mergeable:
            raise CompositionError(
                f"adapter {n!r} is {method.kind}, which cannot be folded into linear weights "
                f"({method.not_mergeable_reason or 'it is not a weight change'})"
            )
    return fastlora.merge_lora(plain_base_copy(model), collect_lora_factors(model, names))


def collect_lora_factors(model: AdaptedModel, names: Sequence[str]) -> dict[str, list[LoraFactors]]:
    """{module name: factors of each adapter in `names` that touches it}, as each adapter's kind gives them."""
    factors: dict[str, list[LoraFactors]] = {}
    for n in names:  # one at a time: adapters may target different modules
        for module, found in model.adapters[n].method.lora_factors(model, n).items():
            factors.setdefault(module, []).append(found)
    return factors
