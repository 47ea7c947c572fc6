"""Low-rank weight changes as plain tensors: what a LoRA (or DoRA) adapter adds to one linear layer.

Defined here, below both `adapterx.methods` (a mergeable kind extracts its factors from its library's modules)
and `adapterx.deploy` (merging, fused and gathered inference layers consume them), so that neither needs the
other's library to exchange them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from adapterx.core.errors import CompositionError


@dataclass(frozen=True)
class LoraFactors:
    """One LoRA adapter on one linear layer: ``delta(x) = scaling * B @ (A @ x)``.

    ``A`` has shape ``(rank, in_features)``, ``B`` ``(out_features, rank)`` (the layouts of ``nn.Linear``
    weights, as peft stores them). ``magnitude`` (``(out_features,)``) makes it a DoRA adapter (Liu et al. 2024):
    the layer's weight becomes ``magnitude / ||W + scaling * B A||_row * (W + scaling * B A)``, the norm taken
    per output row of the weight the adapter was applied to.
    """

    A: torch.Tensor
    B: torch.Tensor
    scaling: float = 1.0
    magnitude: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.A.dim() != 2 or self.B.dim() != 2 or self.A.shape[0] != self.B.shape[1]:
            raise CompositionError(
                f"LoRA factors must be A (r, in) and B (out, r); got A {tuple(self.A.shape)}, B {tuple(self.B.shape)}"
            )
        if self.magnitude is not None and tuple(self.magnitude.shape) != (self.B.shape[0],):
            raise CompositionError(
                f"a DoRA magnitude has one entry per output feature ({self.B.shape[0]}), got "
                f"{tuple(self.magnitude.shape)}"
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

    @property
    def is_dora(self) -> bool:
        return self.magnitude is not None

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A`` (out x in), computed in float32 and returned in A's dtype (plain LoRA's change)."""
        return (self.B.float() @ self.A.float() * self.scaling).to(self.A.dtype)


def fold_stack(weight: torch.Tensor, factors: Sequence[LoraFactors]) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """A stack of adapters on a layer of base weight `weight`, applied in order as peft runs its active adapters
    at inference, as ``W' = gamma * W + sum_k B'_k A_k`` (float32): returns ``gamma`` (one factor per output row;
    None when no adapter is DoRA, i.e. 1) and the ``B'_k``, scalings and later DoRA factors folded in.

    Plain LoRA adds ``s B A``; DoRA k maps the weight so far ``W_k-1`` to ``c_k (W_k-1 + s_k B_k A_k)`` with
    ``c_k = m_k / ||W + s_k B_k A_k||_row`` (the norm over the base weight, as peft computes it).
    """
    base = weight.float()
    gamma: torch.Tensor | None = None
    folded: list[torch.Tensor] = []
    for f in factors:
        b = f.B.float() * f.scaling
        if f.magnitude is not None:
            c = f.magnitude.float() / torch.linalg.norm(base + b @ f.A.float(), dim=1)
            gamma = c if gamma is None else gamma * c
            folded = [earlier * c[:, None] for earlier in folded]
            b = b * c[:, None]
        folded.append(b)
    return gamma, folded


def merged_weight(weight: torch.Tensor, factors: Sequence[LoraFactors]) -> torch.Tensor:
    """`weight` with the stack `factors` folded in (see `fold_stack`), in `weight`'s dtype."""
    gamma, folded = fold_stack(weight, factors)
    out = weight.float() if gamma is None else weight.float() * gamma[:, None]
    for f, b in zip(factors, folded):
        out = out + b @ f.A.float()
    return out.to(weight.dtype)
