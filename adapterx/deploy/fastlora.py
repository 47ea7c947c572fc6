"""Fast LoRA inference layers: a fused stack of adapters, and a mixed batch whose rows use different adapters.

A LoRA adapter on a linear layer ``y = W x + b`` adds ``s * B (A x)`` (``A``: r x in, ``B``: out x r, ``s`` the
scaling ``alpha / r``). This module computes that sum without the per-adapter Python loop, dropout module,
scaling multiply and dtype casts of peft's ``lora.Linear`` forward:

* **fused stack** (every row uses adapters 1..k together): ``sum_i s_i B_i A_i x = B_cat (A_cat x)`` with
  ``A_cat = [A_1; ...; A_k]`` (R x in, R = sum r_i) and ``B_cat = [s_1 B_1, ..., s_k B_k]`` (out x R), the
  scalings folded into ``B_cat`` once. A stack of depth k costs exactly one LoRA of rank R: two GEMMs and an
  in-place accumulate, whatever k is (:class:`FusedLoraLinear`);
* **gathered mixed batch** (row j uses adapter ``a_j`` of N): the factors are stacked into ``(N, r, in)`` and
  ``(N, out, r)`` tensors, gathered by row index and applied with two batched matmuls, one pass for the whole
  batch, instead of peft's one-sub-batch-per-adapter loop (peft #2283) (:class:`GatheredLoraLinear`).

Results equal peft's (unmerged, dropout off) up to floating-point summation order. Inference only: there is no
dropout and the factors are frozen.

The layers are wired in by module name over any ``nn.Module`` (:func:`apply_fused_lora`,
:func:`apply_gathered_lora`) from :class:`LoraFactors` (``adapterx.core.lowrank``), which a mergeable adapter
kind extracts from its own library (``Method.lora_factors``): this module needs no adapter library.
:func:`merge_lora` folds factors into the base weights instead (zero overhead).

Example::

    factors = {m: [mnli[m], xnli[m]] for m in mnli}   # mnli = get_method("lora").lora_factors(model, "mnli")
    stacked = apply_fused_lora(plain_base_copy, factors)               # both adapters, one low-rank product
    out = stacked(input_ids=ids, attention_mask=mask)

    multi = apply_gathered_lora(other_base_copy, factors, ["mnli", "xnli"])   # one adapter per row
    out = multi(input_ids=ids, attention_mask=mask, adapter_ids=torch.tensor([0, 1, 1, 0]))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adapterx.core.errors import CompositionError
from adapterx.core.lowrank import LoraFactors, fold_stack, merged_weight

__all__ = [
    "LoraFactors",
    "fuse_factors",
    "stack_factors",
    "FusedLoraLinear",
    "GatheredLoraLinear",
    "RowAdapters",
    "MultiLoraModel",
    "apply_fused_lora",
    "apply_gathered_lora",
    "merge_lora",
    "merge_into_linear",
]


def _check_same_layer(factors: Sequence[LoraFactors], where: str = "") -> None:
    if not factors:
        raise CompositionError(f"no LoRA factors given{where}")
    shapes = {(f.in_features, f.out_features) for f in factors}
    if len(shapes) != 1:
        raise CompositionError(f"LoRA factors of different layer shapes{where}: {sorted(shapes)}")


def fuse_factors(factors: Sequence[LoraFactors]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate a stack of adapters into one low-rank pair ``(A_cat (R, in), B_cat (out, R))``.

    ``B_cat @ A_cat == sum_i scaling_i * B_i @ A_i``: the scalings are folded into ``B_cat``; ranks may differ.
    """
    _check_same_layer(factors)
    if any(f.is_dora for f in factors):
        raise CompositionError("DoRA factors depend on the base weight: fold them with fold_stack(weight, factors)")
    a = torch.cat([f.A for f in factors], dim=0)
    b = torch.cat([f.B * f.scaling for f in factors], dim=1)
    return a, b


def stack_factors(factors: Sequence[LoraFactors]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack N alternative adapters into ``(N, r, in)`` and ``(N, out, r)`` tensors, scalings folded in.

    Adapters of lower rank are padded with zero rows of A and zero columns of B to the largest rank, which
    leaves their product unchanged.
    """
    _check_same_layer(factors)
    if any(f.is_dora for f in factors):
        raise CompositionError(
            "a DoRA adapter rescales the whole layer's weight, not only its low-rank part: it has no gathered "
            "per-row form; serve DoRA adapters one at a time or through peft"
        )
    r = max(f.rank for f in factors)
    n, d_in, d_out = len(factors), factors[0].in_features, factors[0].out_features
    dtype, device = factors[0].A.dtype, factors[0].A.device
    a = torch.zeros(n, r, d_in, dtype=dtype, device=device)
    b = torch.zeros(n, d_out, r, dtype=dtype, device=device)
    for i, f in enumerate(factors):
        a[i, : f.rank] = f.A
        b[i, :, : f.rank] = f.B * f.scaling
    return a, b


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=False)


class FusedLoraLinear(nn.Module):
    """``base(x) + B_cat (A_cat x)``: a stack of LoRA adapters on one linear layer, as one low-rank product.

    Three kernels whatever the stack depth: the base GEMM (bias included), ``x @ A_cat.T`` and an in-place
    ``addmm_`` of ``h @ B_cat.T`` into the base output. The base ``nn.Linear`` is kept, not copied, so its
    weights stay shared with the model it came from. The factors are cast to the base weight's dtype/device.
    A stack with DoRA adapters also scales the base GEMM's output rows by ``gamma`` (see
    `adapterx.core.lowrank.fold_stack`): ``gamma * (W x) + b + B'_cat (A_cat x)``.
    """

    def __init__(self, base: nn.Linear, factors: Sequence[LoraFactors]):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CompositionError(f"FusedLoraLinear wraps nn.Linear, got {type(base).__name__}")
        _check_same_layer(factors, f" for a Linear({base.in_features}, {base.out_features})")
        if (factors[0].in_features, factors[0].out_features) != (base.in_features, base.out_features):
            raise CompositionError(
                f"LoRA factors for ({factors[0].in_features} -> {factors[0].out_features}) do not fit "
                f"Linear({base.in_features}, {base.out_features})"
            )
        w = base.weight
        gamma, folded = fold_stack(w, factors)
        self.base = base
        self.lora_A = _frozen(torch.cat([f.A for f in factors], dim=0).to(w.device, w.dtype))
        self.lora_B = _frozen(torch.cat(folded, dim=1).to(w.device, w.dtype))
        self.gamma = None if gamma is None else _frozen(gamma.to(w.device, w.dtype))
        self.num_adapters = len(factors)

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma is None:
            out = F.linear(x, self.base.weight, self.base.bias)
        else:
            out = F.linear(x, self.base.weight) * self.gamma
            if self.base.bias is not None:
                out += self.base.bias
        h = F.linear(x, self.lora_A)
        out2d = out.view(-1, out.shape[-1])
        out2d.addmm_(h.view(-1, h.shape[-1]), self.lora_B.t())
        return out

    def extra_repr(self) -> str:
        return (
            f"in={self.base.in_features}, out={self.base.out_features}, adapters={self.num_adapters}, rank={self.rank}"
        )


class RowAdapters:
    """The adapter index of each row of the current batch, shared by every :class:`GatheredLoraLinear` of one
    model. Set it with :meth:`MultiLoraModel.forward` (``adapter_ids=``) or the :meth:`select` context."""

    def __init__(self, num_adapters: int):
        self.num_adapters = num_adapters
        self.index: torch.Tensor | None = None

    @contextmanager
    def select(self, adapter_ids: torch.Tensor | Sequence[int]) -> Iterator[None]:
        ids = torch.as_tensor(adapter_ids, dtype=torch.long)
        if ids.dim() != 1:
            raise CompositionError(f"adapter_ids must be one index per row, got shape {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_adapters):
            raise CompositionError(f"adapter_ids must lie in [0, {self.num_adapters}); got {ids.tolist()}")
        previous, self.index = self.index, ids
        try:
            yield
        finally:
            self.index = previous


class GatheredLoraLinear(nn.Module):
    """``base(x)[j] + B_{a_j} (A_{a_j} x[j])`` for each row j: N alternative adapters chosen per row.

    One pass for the whole batch: the factors of each row's adapter are gathered by index and applied with
    two ``bmm`` calls (the second accumulating in place into the base output). ``x`` is ``(batch, seq, in)``
    or ``(batch, in)``; the row indices come from the shared :class:`RowAdapters`.
    """

    def __init__(self, base: nn.Linear, factors: Sequence[LoraFactors], rows: RowAdapters):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise CompositionError(f"GatheredLoraLinear wraps nn.Linear, got {type(base).__name__}")
        if len(factors) != rows.num_adapters:
            raise CompositionError(f"{len(factors)} adapters given, the row selector expects {rows.num_adapters}")
        a, b = stack_factors(factors)
        if (a.shape[2], b.shape[1]) != (base.in_features, base.out_features):
            raise CompositionError(
                f"LoRA factors for ({a.shape[2]} -> {b.shape[1]}) do not fit "
                f"Linear({base.in_features}, {base.out_features})"
            )
        w = base.weight
        self.base = base
        self.lora_A = _frozen(a.to(w.device, w.dtype))  # (N, r, in)
        self.lora_B = _frozen(b.to(w.device, w.dtype))  # (N, out, r)
        self.rows = rows
        self._index_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _row_index(self) -> torch.Tensor:
        index = self.rows.index
        if index is None:
            raise CompositionError(
                "GatheredLoraLinear needs per-row adapter ids: call the MultiLoraModel with "
                "adapter_ids=..., or use RowAdapters.select(...)"
            )
        cached = self._index_cache
        if cached is not None and cached[0] is index:
            return cached[1]
        moved = index.to(self.lora_A.device)
        self._index_cache = (index, moved)
        return moved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = self._row_index()
        squeeze = x.dim() == 2
        if squeeze:
            x = x.unsqueeze(1)
        if x.shape[0] != index.shape[0]:
            raise CompositionError(f"batch has {x.shape[0]} rows but {index.shape[0]} adapter ids were given")
        out = F.linear(x, self.base.weight, self.base.bias)
        a = self.lora_A.index_select(0, index)  # (b, r, in)
        b = self.lora_B.index_select(0, index)  # (b, out, r)
        h = torch.bmm(x, a.transpose(1, 2))  # (b, s, r)
        out.baddbmm_(h, b.transpose(1, 2))  # (b, s, out) += h @ B^T
        return out.squeeze(1) if squeeze else out

    def extra_repr(self) -> str:
        n, r, _ = self.lora_A.shape
        return f"in={self.base.in_features}, out={self.base.out_features}, adapters={n}, rank={r}"


class MultiLoraModel(nn.Module):
    """A model whose LoRA layers are :class:`GatheredLoraLinear`; ``forward(..., adapter_ids=...)`` picks the
    adapter of each row (an index into ``adapter_names``) and passes everything else to the wrapped model."""

    def __init__(self, model: nn.Module, rows: RowAdapters, adapter_names: Sequence[str] | None = None):
        super().__init__()
        self.model = model
        self.rows = rows
        self.adapter_names = (
            list(adapter_names) if adapter_names is not None else [str(i) for i in range(rows.num_adapters)]
        )

    def adapter_ids(self, names: Sequence[str]) -> torch.Tensor:
        """Row indices for a list of adapter names (one per row)."""
        lookup = {n: i for i, n in enumerate(self.adapter_names)}
        missing = sorted(set(names) - set(lookup))
        if missing:
            raise CompositionError(f"unknown adapter(s) {missing}; known: {self.adapter_names}")
        return torch.tensor([lookup[n] for n in names], dtype=torch.long)

    def forward(self, *args: Any, adapter_ids: torch.Tensor | Sequence[int], **kwargs: Any) -> Any:
        with self.rows.select(adapter_ids):
            return self.model(*args, **kwargs)


def _replace(model: nn.Module, name: str, make) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child, None)
    if old is None:
        raise CompositionError(f"model has no module {name!r}")
    setattr(parent, child, make(old))


def apply_fused_lora(model: nn.Module, factors_by_module: Mapping[str, Sequence[LoraFactors]]) -> nn.Module:
    """Replace each named ``nn.Linear`` of `model` (in place) by a :class:`FusedLoraLinear` over its stack of
    factors; returns `model`. Names are as in ``model.named_modules()``."""
    for name, factors in factors_by_module.items():
        _replace(model, name, lambda old, f=factors: FusedLoraLinear(old, f))
    return model


def apply_gathered_lora(
    model: nn.Module, factors_by_module: Mapping[str, Sequence[LoraFactors]], adapter_names: Sequence[str] | None = None
) -> MultiLoraModel:
    """Replace each named ``nn.Linear`` of `model` (in place) by a :class:`GatheredLoraLinear` over its N
    alternative adapters (the same N, in the same order, for every module) and wrap the model in a
    :class:`MultiLoraModel`."""
    counts = {len(f) for f in factors_by_module.values()}
    if len(counts) != 1:
        raise CompositionError(f"every module needs the same number of adapters; got counts {sorted(counts)}")
    rows = RowAdapters(counts.pop())
    for name, factors in factors_by_module.items():
        _replace(model, name, lambda old, f=factors: GatheredLoraLinear(old, f, rows))
    return MultiLoraModel(model, rows, adapter_names)


@torch.no_grad()
def merge_lora(model: nn.Module, factors_by_module: Mapping[str, Sequence[LoraFactors]]) -> nn.Module:
    """Add ``sum_i scaling_i B_i A_i`` to each named ``nn.Linear``'s weight (DoRA adapters: as
    `adapterx.core.lowrank.fold_stack` says), in place (zero inference overhead). Formed in float32. Returns
    `model`. The weights must not be shared with another model."""
    for name, factors in factors_by_module.items():
        layer = model.get_submodule(name)
        if not isinstance(layer, nn.Linear):
            raise CompositionError(f"{name!r} is a {type(layer).__name__}, not an nn.Linear")
        merge_into_linear(layer, factors)
    return model


@torch.no_grad()
def merge_into_linear(layer: nn.Linear, factors: Sequence[LoraFactors]) -> None:
    """Fold a stack of LoRA / DoRA factors into one linear layer's weight, in place."""
    _check_same_layer(factors, f" for {layer}")
    moved = [_on(f, layer.weight.device) for f in factors]
    layer.weight.copy_(merged_weight(layer.weight, moved))


def _on(f: LoraFactors, device: torch.device) -> LoraFactors:
    magnitude = None if f.magnitude is None else f.magnitude.to(device)
    return LoraFactors(f.A.to(device), f.B.to(device), f.scaling, magnitude)
