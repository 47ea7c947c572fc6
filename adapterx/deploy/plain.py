"""Plain transformers encoders built from an adapted model: a copy of the frozen base, the base with the active
adapters' weight changes folded in (merged), and the base with those changes as plain modules (fused). Shared by
every deployment form that runs without an adapter library at inference (merged, fused, gathered) and by the
merge-then-train strategy, which trains on a merged base.

A mergeable kind says what its adapter does to each linear layer as plain tensors (`Method.weight_changes`: LoRA
and DoRA give `adapterx.core.lowrank.LoraFactors`, (IA)³ gives `adapterx.core.scaling.FeatureScaling`); the table
`CHANGE_TYPES` says, per type of change, how a stack of them folds into a layer and which plain module runs it
unmerged. A kind with a new type of change registers it with `register_change_type`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import nn
from transformers import AutoModel, PreTrainedModel

from adapterx.core.errors import CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdaptedModel
from adapterx.core.scaling import FeatureScaling
from adapterx.deploy import fastlora, fastscaling


@dataclass(frozen=True)
class ChangeType:
    """How a stack of one type of weight change (bottom first) is folded into one ``nn.Linear`` in place
    (`merge`), and the plain module that runs it unmerged around that layer (`layer`)."""

    merge: Callable[[nn.Linear, Sequence], None]
    layer: Callable[[nn.Linear, Sequence], nn.Module]


CHANGE_TYPES: dict[type, ChangeType] = {
    LoraFactors: ChangeType(fastlora.merge_into_linear, fastlora.FusedLoraLinear),
    FeatureScaling: ChangeType(fastscaling.merge_into_linear, fastscaling.ScaledLinear),
}


def register_change_type(cls: type, merge: Callable, layer: Callable) -> None:
    """Teach merging and the fused form a new type of weight change (a plugin kind's own)."""
    CHANGE_TYPES[cls] = ChangeType(merge, layer)


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


def check_mergeable_names(model: AdaptedModel, names: Sequence[str]) -> None:
    for n in names:
        method = model.adapters[n].method
        if not method.mergeable:
            raise CompositionError(
                f"adapter {n!r} is {method.kind}, which cannot be folded into linear weights "
                f"({method.not_mergeable_reason or 'it is not a weight change'})"
            )


def merge_into_base(model: AdaptedModel, names: Sequence[str]) -> PreTrainedModel:
    """A plain encoder whose linear weights include the changes of the adapters `names` (bottom first; LoRA:
    W + Σ_i s_i B_i A_i, summed in float32); the model itself is left unchanged."""
    check_mergeable_names(model, names)
    return merge_changes(plain_base_copy(model), collect_weight_changes(model, names))


def collect_weight_changes(model: AdaptedModel, names: Sequence[str]) -> dict[str, list]:
    """{module name: the change of each adapter in `names` that touches it, bottom first}, as each adapter's kind
    gives them (`Method.weight_changes`)."""
    changes: dict[str, list] = {}
    for n in names:  # one at a time: adapters may target different modules
        for module, found in model.adapters[n].method.weight_changes(model, n).items():
            changes.setdefault(module, []).append(found)
    return changes


def _change_type(module: str, changes: Sequence) -> ChangeType:
    types = {type(c) for c in changes}
    if len(types) != 1:
        raise CompositionError(f"{module}: changes of different types {sorted(t.__name__ for t in types)}")
    cls = types.pop()
    if cls not in CHANGE_TYPES:
        known = ", ".join(t.__name__ for t in CHANGE_TYPES)
        raise CompositionError(
            f"{module}: no merge is known for a {cls.__name__} (known: {known}; see register_change_type)"
        )
    return CHANGE_TYPES[cls]


def merge_changes(model: nn.Module, changes_by_module: Mapping[str, Sequence]) -> nn.Module:
    """Fold each named ``nn.Linear``'s stack of changes into its weights, in place; returns `model` (whose weights
    must not be shared with another model)."""
    for name, changes in changes_by_module.items():
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise CompositionError(f"{name!r} is a {type(layer).__name__}, not an nn.Linear")
        _change_type(name, changes).merge(layer, changes)
    return model


def apply_plain_layers(model: nn.Module, changes_by_module: Mapping[str, Sequence]) -> nn.Module:
    """Replace each named ``nn.Linear`` (in place) by the plain module of its stack of changes (LoRA: one
    low-rank product, fastlora; (IA)³: one vector per side, fastscaling); returns `model`."""
    for name, changes in changes_by_module.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child, None)
        if old is None:
            raise CompositionError(f"model has no module {name!r}")
        setattr(parent, child, _change_type(name, changes).layer(old, changes))
    return model
