"""(IA)³ adapters without peft: the learned vectors of a stack, multiplied into one per side, as a plain module
around each scaled linear layer (`ScaledLinear`), or folded into its weights (`merge_into_linear`).

The vectors come as `adapterx.core.scaling.FeatureScaling`, which the kind reads out of its library
(``Method.weight_changes``): this module needs no adapter library. Results equal peft's unmerged forward up to
float rounding (it multiplies the same vectors, in float32 once here instead of per call).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from adapterx.core.errors import CompositionError
from adapterx.core.scaling import FeatureScaling, fold_scalings, scaled_weight

__all__ = ["ScaledLinear", "merge_into_linear"]


class ScaledLinear(nn.Module):
    """``l_out * base(l_in * x)``: a stack of (IA)³ vectors on one linear layer, each side one product. The base
    ``nn.Linear`` is kept, not copied (its weights stay shared)."""

    def __init__(self, base: nn.Linear, scalings: Sequence[FeatureScaling]):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CompositionError(f"ScaledLinear wraps nn.Linear, got {type(base).__name__}")
        if not scalings:
            raise CompositionError("ScaledLinear needs at least one scaling")
        l_in, l_out = fold_scalings(scalings, base.in_features, base.out_features)
        w = base.weight
        self.base = base
        self.input_scale = None if l_in is None else nn.Parameter(l_in.to(w.device, w.dtype), requires_grad=False)
        self.output_scale = None if l_out is None else nn.Parameter(l_out.to(w.device, w.dtype), requires_grad=False)
        self.num_adapters = len(scalings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            x = x * self.input_scale
        out = self.base(x)
        return out * self.output_scale if self.output_scale is not None else out

    def extra_repr(self) -> str:
        sides = [s for s, v in (("input", self.input_scale), ("output", self.output_scale)) if v is not None]
        return f"in={self.base.in_features}, out={self.base.out_features}, adapters={self.num_adapters}, on={sides}"


@torch.no_grad()
def merge_into_linear(layer: nn.Linear, scalings: Sequence[FeatureScaling]) -> None:
    """Fold a stack of (IA)³ vectors into one linear layer's weight (and, for output scalings, its bias), in
    place."""
    weight, bias = scaled_weight(layer.weight, layer.bias, scalings)
    layer.weight.copy_(weight)
    if bias is not None:
        layer.bias.copy_(bias)
