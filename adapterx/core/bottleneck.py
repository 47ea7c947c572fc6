"""Bottleneck adapters as plain tensors: what one trained sequential bottleneck adapter adds after a sub-layer.

Defined here, below both `adapterx.methods` (the bottleneck kind reads them out of its library's modules) and
`adapterx.deploy` (the fast inference form runs them), so that neither needs the other's library to exchange
them; the arithmetic these fields control is spelled out in `adapterx.deploy.fastbottleneck`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapterx.core.errors import CompositionError

__all__ = ["LayerNormWeights", "BottleneckWeights"]


@dataclass(frozen=True)
class LayerNormWeights:
    """An adapter's own layer norm (``ln_before`` / ``ln_after``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    eps: float


@dataclass(frozen=True)
class BottleneckWeights:
    """One trained bottleneck adapter at one location: projections (``nn.Linear`` layouts), non-linearity name
    (as the adapters library resolves it: transformers' ``get_activation``, or ``leakyrelu``) and the config
    flags that decide where its residual and layer norms go."""

    name: str
    down_weight: torch.Tensor  # (bottleneck, hidden)
    down_bias: torch.Tensor
    up_weight: torch.Tensor  # (hidden, bottleneck)
    up_bias: torch.Tensor
    non_linearity: str
    scaling: float | torch.Tensor = 1.0  # a float, or a learned tensor ("learned" / "channel" scaling)
    residual_before_ln: bool | str = True
    original_ln_before: bool = False
    original_ln_after: bool = True
    adapter_residual_before_ln: bool = False
    ln_before: LayerNormWeights | None = None
    ln_after: LayerNormWeights | None = None

    def __post_init__(self) -> None:
        d, u = tuple(self.down_weight.shape), tuple(self.up_weight.shape)
        h, m = u if len(u) == 2 else (-1, -1)
        if d != (m, h) or self.down_bias.shape != (m,) or self.up_bias.shape != (h,):
            raise CompositionError(
                f"bottleneck adapter {self.name!r}: projections must be down (m, d) and up (d, m) with biases; got "
                f"down {d}, up {u}, biases {tuple(self.down_bias.shape)}, {tuple(self.up_bias.shape)}"
            )
        if self.residual_before_ln not in (True, False, "post_add"):
            raise CompositionError(
                f"bottleneck adapter {self.name!r}: residual_before_ln must be True, False or "
                f"'post_add', got {self.residual_before_ln!r}"
            )
        if self.residual_before_ln == "post_add" and not self.original_ln_before:
            raise CompositionError(
                f"bottleneck adapter {self.name!r}: residual_before_ln='post_add' needs "
                f"original_ln_before (the library has no residual otherwise)"
            )

    @property
    def hidden_size(self) -> int:
        return self.down_weight.shape[1]
