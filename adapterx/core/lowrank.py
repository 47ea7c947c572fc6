"""Low-rank weight deltas as plain tensors: what a LoRA adapter adds to one linear layer.

Defined here, below both `adapterx.methods` (a mergeable kind extracts its factors from its library's modules)
and `adapterx.deploy` (merging, fused and gathered inference layers consume them), so that neither needs the
other's library to exchange them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adapterx.core.errors import CompositionError


@dataclass(frozen=True)
class LoraFactors:
    """One LoRA adapter on one linear layer: ``delta(x) = scaling * B @ (A @ x)``.

    ``A`` has shape ``(rank, in_features)``, ``B`` ``(out_features, rank)`` (the layouts of ``nn.Linear``
    weights, as peft stores them).
    """

    A: torch.Tensor
    B: torch.Tensor
    scaling: float = 1.0

    def __post_init__(self) -> None:
        if self.A.dim() != 2 or self.B.dim() != 2 or self.A.shape[0] != self.B.shape[1]:
            raise CompositionError(
                f"LoRA factors must be A (r, in) and B (out, r); got A {tuple(self.A.shape)}, B {tuple(self.B.shape)}"
            )

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @property
    def in_features(self) -> int:
        return self.A.shape[1]

    @property
    def out_features(self) -> int:
        return self.B.shape[0]

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A`` (out x in), computed in float32 and returned in A's dtype."""
        return (self.B.float() @ self.A.float() * self.scaling).to(self.A.dtype)
