"""Bottleneck adapters through the adapters library: Pfeiffer (SeqBn, after the FFN) or Houlsby
(DoubleSeqBn, after attention and FFN). Not mergeable: the non-linearity sits between the projections.
Composable as the library allows (adapterx.methods._adapters_family): stacked, averaged (weights summing to 1),
fused, and one adapter per row of a batch. `bottleneck_weights` reads a trained stack out of the library's
model as plain tensors and config flags, for the fast inference form (adapterx.deploy.fastbottleneck), which runs
them with no library code."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from adapters import BnConfig, DoubleSeqBnConfig, SeqBnConfig
from adapters.composition import Stack
from adapters.methods.bottleneck import BottleneckLayer
from adapters.methods.modeling import ParallelAdapter
from torch import nn

from adapterx.core.bottleneck import BottleneckWeights, LayerNormWeights
from adapterx.core.errors import AdapterxError, CompositionError
from adapterx.methods._adapters_family import AdaptersMethod
from adapterx.methods.base import AdapterSpec

if TYPE_CHECKING:
    from adapterx.core.model import AdaptedModel

_ARCHITECTURES = {"pfeiffer": SeqBnConfig, "houlsby": DoubleSeqBnConfig}


@dataclass(frozen=True)
class BottleneckSpec(AdapterSpec):
    kind = "bottleneck"
    architecture: str = "pfeiffer"
    reduction_factor: int = 16
    non_linearity: str = "relu"

    def validate(self, where: str) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise AdapterxError(
                f"{where}.architecture: {self.architecture!r} is not one of {', '.join(_ARCHITECTURES)}"
            )
        if not isinstance(self.reduction_factor, int) or self.reduction_factor < 1:
            raise AdapterxError(f"{where}.reduction_factor: must be a positive integer, got {self.reduction_factor!r}")


class BottleneckMethod(AdaptersMethod):
    kind = "bottleneck"
    spec_type = BottleneckSpec
    mergeable = False
    not_mergeable_reason: ClassVar[str] = (
        "a bottleneck adapter computes up(f(down(h))) with a non-linearity f between its projections, so no change "
        "of a linear weight equals it"
    )
    bench_builders: ClassVar[tuple[str, ...]] = ("adapterx.bench.bottleneck_forms",)
    bench_default_forms: ClassVar[tuple[str, ...]] = (
        "bottleneck",
        "bottleneck-fast",
        "bottleneck-stack-2",
        "bottleneck-stack-2-fast",
        "bottleneck-stack-3",
        "bottleneck-stack-3-fast",
        "bottleneck-stack-4",
        "bottleneck-stack-4-fast",
    )
    bench_quick_forms: ClassVar[tuple[str, ...]] = (
        "bottleneck",
        "bottleneck-fast",
        "bottleneck-stack-2",
        "bottleneck-stack-2-fast",
    )
    examples: ClassVar[tuple[dict, ...]] = (
        {"reduction_factor": 4},
        {"architecture": "houlsby", "reduction_factor": 4},
    )

    def capacity_scaled(self, spec: BottleneckSpec, factor: int) -> tuple[AdapterSpec | None, str]:
        """The reduction factor divided by `factor` (a bottleneck `factor` times as wide)."""
        if spec.reduction_factor % factor:
            return None, (
                f"reduction factor {spec.reduction_factor} is not divisible by {factor}: no single "
                f"bottleneck adapter has the stacked size"
            )
        return dataclasses.replace(spec, reduction_factor=spec.reduction_factor // factor), ""

    def train_bench_spec(self, settings: Mapping[str, int]) -> BottleneckSpec:
        return BottleneckSpec(reduction_factor=settings["reduction_factor"])

    def composition_problem(self, block: str, specs: Mapping[str, dict], options: Mapping) -> str:
        if block == "sum":
            return (
                "'sum' adds LoRA weight deltas; a bottleneck adapter is a small network, not a weight delta. Use "
                "'stack' (the adapters library's Stack) or 'weighted' (its Average of the adapters' outputs)"
            )
        problem = super().composition_problem(block, specs, options)
        if problem or block != "weighted":
            return problem
        weights = list(options["weights"])
        if abs(sum(weights) - 1.0) > 1e-6:
            return (
                f"a weighted average of bottleneck adapters needs weights that sum to 1 (each adapter's output "
                f"carries the layer's residual); got {weights} (sum {sum(weights):g})"
            )
        return ""

    def bench_options(self, spec: BottleneckSpec) -> dict:
        return {"reduction_factor": spec.reduction_factor}

    def bench_form(self, spec: AdapterSpec, strategy: str, form: str) -> str | None:
        if form == "fused" and strategy != "fuse":  # the fast form: plain modules, no library hooks
            return "bottleneck-stack-2-fast" if strategy == "stack" else "bottleneck-fast"
        return super().bench_form(spec, strategy, form)

    def bottleneck_weights(self, model: "AdaptedModel", names: Sequence[str]) -> dict[str, list[BottleneckWeights]]:
        """The weights of adapters `names`, active as a plain stack in that order, as plain tensors and config
        flags: {sub-layer module name (as in the backbone's encoder, e.g. ``encoder.layer.0.output``): [the
        BottleneckWeights of each named adapter present there, bottom first]}. Another active composition (an
        average, a fusion, a mixed batch) has other arithmetic: CompositionError."""
        active = active_stack(model.encoder)
        if active != list(names):
            raise CompositionError(
                f"bottleneck adapters {list(names)} are not active as a plain stack (the active "
                f"composition is {_describe(model.encoder)}): no fast form reproduces it"
            )
        return bottleneck_weights(model.encoder, names)

    def library_config(self, spec: BottleneckSpec):
        return _ARCHITECTURES[spec.architecture](
            reduction_factor=spec.reduction_factor, non_linearity=spec.non_linearity
        )


def _describe(encoder: nn.Module) -> str:
    return str(getattr(getattr(encoder, "adapters_config", None), "active_setup", None))


def active_stack(encoder: nn.Module) -> list[str] | None:
    """The active adapters of an adapters-library model, bottom first, when its active setup is a plain Stack
    of adapter names (what `store.activate` sets); None for any other composition."""
    setup = getattr(getattr(encoder, "adapters_config", None), "active_setup", None)
    if isinstance(setup, str):
        return [setup]
    if isinstance(setup, Stack) and all(isinstance(c, str) for c in setup.children):
        return list(setup.children)
    return None


def bottleneck_weights(encoder: nn.Module, names: Sequence[str]) -> dict[str, list[BottleneckWeights]]:
    """{sub-layer module name: [BottleneckWeights of each adapter of `names` present there, in that order]} read
    from an adapters-library model; module names are relative to `encoder`, so they address the same
    sub-layers of a plain transformers copy of the base."""
    out: dict[str, list[BottleneckWeights]] = {}
    found: set[str] = set()
    for module_name, layer in encoder.named_modules():
        if not isinstance(layer, BottleneckLayer):
            continue
        present = [n for n in names if n in layer.adapters]
        if not present:
            continue
        if getattr(layer, "is_layer_hooked", False) or not hasattr(layer, "dense"):
            raise CompositionError(
                f"{module_name}: bottleneck adapters hooked onto a {type(layer).__name__} "
                f"(not a BERT/RoBERTa output sub-layer) have no fast form"
            )
        out[module_name] = [_adapter_weights(layer, n, module_name) for n in present]
        found.update(present)
    missing = [n for n in names if n not in found]
    if missing:
        raise CompositionError(f"no bottleneck adapter named {missing} in the model")
    return out


def _layer_norm(ln: nn.LayerNorm) -> LayerNormWeights:
    return LayerNormWeights(ln.weight.detach(), ln.bias.detach(), float(ln.eps))


def _adapter_weights(layer: BottleneckLayer, name: str, where: str) -> BottleneckWeights:
    adapter = layer.adapters[name]
    config = layer.adapters_config.match(
        name, config_type=BnConfig, layer_idx=layer.layer_idx, location_key=layer.location_key
    )
    linears = [m for m in adapter.adapter_down if isinstance(m, nn.Linear)]
    unsupported = [
        what
        for what, bad in (
            ("parallel adapters", isinstance(adapter, ParallelAdapter)),
            ("gating", adapter.use_gating),
            ("PHM layers", len(linears) != 1 or not isinstance(adapter.adapter_up, nn.Linear)),
        )
        if bad
    ]
    if unsupported or config is None:
        raise CompositionError(
            f"bottleneck adapter {name!r} at {where}: {', '.join(unsupported) or 'no config'} "
            f"not supported by the fast form"
        )
    scaling = adapter.scaling.detach() if isinstance(adapter.scaling, torch.Tensor) else float(adapter.scaling)
    return BottleneckWeights(
        name=name,
        down_weight=linears[0].weight.detach(),
        down_bias=linears[0].bias.detach(),
        up_weight=adapter.adapter_up.weight.detach(),
        up_bias=adapter.adapter_up.bias.detach(),
        non_linearity=str(config["non_linearity"]),
        scaling=scaling,
        residual_before_ln=adapter.residual_before_ln,
        original_ln_before=bool(adapter.original_ln_before),
        original_ln_after=bool(adapter.original_ln_after),
        adapter_residual_before_ln=bool(adapter.adapter_residual_before_ln),
        ln_before=_layer_norm(adapter.adapter_norm_before) if adapter.add_layer_norm_before else None,
        ln_after=_layer_norm(adapter.adapter_norm_after) if adapter.add_layer_norm_after else None,
    )
