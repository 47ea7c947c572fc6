"""Learned per-feature scalings as plain tensors: what an (IA)³ adapter (Liu et al. 2022) does to one linear
layer ``y = W x + b``.

Defined here, below both `adapterx.methods` (the kind reads its vectors out of its library's modules) and
`adapterx.deploy` (merging and the library-free inference layer consume them), as `adapterx.core.lowrank` is for
LoRA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adapterx.core.errors import CompositionError

SIDES = ("input", "output")


@dataclass(frozen=True)
class FeatureScaling:
    """A vector multiplying the layer's input (``on="input"``: ``y = W (l * x) + b``; (IA)³'s feed-forward
    layers) or its output (``on="output"``: ``y = l * (W x + b)``; (IA)³'s keys and values)."""

    vector: torch.Tensor
    on: str

    def __post_init__(self) -> None:
        if self.on not in SIDES:
            raise CompositionError(f"a feature scaling applies to the layer's input or output, not {self.on!r}")
        if self.vector.dim() != 1:
            raise CompositionError(f"a feature scaling is one vector, got shape {tuple(self.vector.shape)}")


def fold_scalings(scalings: Sequence[FeatureScaling], in_features: int, out_features: int):
    """(input vector or None, output vector or None): a stack of scalings on one layer is their product per side
    (what peft's (IA)³ layer computes for several active adapters), in float32."""
    product: dict[str, torch.Tensor | None] = dict.fromkeys(SIDES)
    for s in scalings:
        size = in_features if s.on == "input" else out_features
        if s.vector.shape[0] != size:
            raise CompositionError(
                f"an {s.on} scaling of {s.vector.shape[0]} features does not fit a layer of {in_features} -> "
                f"{out_features}"
            )
        current = product[s.on]
        product[s.on] = s.vector.float() if current is None else current * s.vector.float()
    return product["input"], product["output"]


def scaled_weight(
    weight: torch.Tensor, bias: torch.Tensor | None, scalings: Sequence[FeatureScaling]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`weight` (out x in) and `bias` with the stack `scalings` folded in: ``W diag(l_in)`` and ``diag(l_out) W``,
    ``l_out * b``; in their own dtypes."""
    l_in, l_out = fold_scalings(scalings, weight.shape[1], weight.shape[0])
    w = weight.float()
    if l_in is not None:
        w = w * l_in.to(w.device)[None, :]
    if l_out is not None:
        w = w * l_out.to(w.device)[:, None]
        if bias is not None:
            bias = (bias.float() * l_out.to(bias.device)).to(bias.dtype)
    return w.to(weight.dtype), bias
