"""One frozen encoder serving many LoRA adapters at once: each row of a batch picks its own adapters.

The factors of every served LoRA adapter are stacked per layer into one *bank*: ``A`` of shape ``(N, r, in)``
and ``B`` of shape ``(N, out, r)`` (scalings folded into ``B``, lower ranks padded with zeros, slot 0 all zeros:
"no adapter"). A row carries ``K`` slot indices -- one adapter, a stack of several (their deltas add: a LoRA
stack is one low-rank product of the concatenated factors), or none -- and each wrapped linear layer computes

    out[j] = W x[j] + b + [B_{s_j1} .. B_{s_jK}] ([A_{s_j1}; ..; A_{s_jK}] x[j])

for the whole batch with one gather and two batched matmuls, whatever mix of adapters the rows name (the
gathered form of `adapterx.deploy.fastlora`, with a stack per row). Adding or removing an adapter builds a new
bank and swaps it in between two forwards; the base weights are never copied or changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adapterx.core.errors import CompositionError
from adapterx.core.lowrank import LoraFactors
from adapterx.core.sharing import share_copy
from adapterx.deploy.fastlora import stack_factors

NO_ADAPTER = 0  # the slot index of "no adapter" (zero factors) in every bank


@dataclass(frozen=True)
class LoraBank:
    """The stacked factors of N adapters. `keys[i]` names slot i + 1; `a[module]` is ``(N + 1, r, in)`` and
    `b[module]` ``(N + 1, out, r)``, slot 0 zero."""

    keys: tuple[str, ...] = ()
    a: Mapping[str, torch.Tensor] = field(default_factory=dict)
    b: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def index(self, key: str) -> int:
        return self.keys.index(key) + 1

    @property
    def modules(self) -> list[str]:
        return list(self.a)


def build_bank(slots: Mapping[str, Mapping[str, LoraFactors]], encoder: nn.Module) -> LoraBank:
    """A bank over `slots` ({key: {module name: factors}}; a slot that leaves a module alone adds zeros there),
    cast to the dtype and device of `encoder`'s layers of those names."""
    modules = list(dict.fromkeys(m for factors in slots.values() for m in factors))
    a, b = {}, {}
    for module in modules:
        layer = encoder.get_submodule(module)
        base = layer.base if isinstance(layer, BankedLinear) else layer
        if not isinstance(base, nn.Linear):
            raise CompositionError(f"LoRA factors for {module!r}, which is a {type(base).__name__}, not a Linear")
        zero = LoraFactors(base.weight.new_zeros(1, base.in_features), base.weight.new_zeros(base.out_features, 1))
        column = [zero] + [slots[key].get(module, zero) for key in slots]
        stacked_a, stacked_b = stack_factors([LoraFactors(f.A.float(), f.B.float(), f.scaling) for f in column])
        a[module] = stacked_a.to(base.weight.device, base.weight.dtype)
        b[module] = stacked_b.to(base.weight.device, base.weight.dtype)
    return LoraBank(tuple(slots), a, b)


class BankState:
    """What every wrapped layer of one encoder reads during a forward: the bank and each row's slots."""

    def __init__(self) -> None:
        self.bank = LoraBank()
        self.slots: torch.Tensor | None = None  # (rows, K) slot indices; None: no row has an adapter


class BankedLinear(nn.Module):
    """A linear layer plus, per row, the low-rank deltas of the row's slots in the shared bank."""

    def __init__(self, base: nn.Linear, name: str, state: BankState):
        super().__init__()
        self.base, self.name, self.state = base, name, state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.base.weight, self.base.bias)
        slots = self.state.slots
        a = None if slots is None else self.state.bank.a.get(self.name)
        if a is None or slots is None:
            return out
        b = self.state.bank.b[self.name]
        squeeze = x.dim() == 2
        if squeeze:
            x, out = x.unsqueeze(1), out.unsqueeze(1)
        rows_a = a[slots].flatten(1, 2)  # (rows, K * r, in)
        rows_b = b[slots].permute(0, 2, 1, 3).flatten(2)  # (rows, out, K * r)
        out.baddbmm_(torch.bmm(x, rows_a.transpose(1, 2)), rows_b.transpose(1, 2))
        return out.squeeze(1) if squeeze else out

    def extra_repr(self) -> str:
        return f"in={self.base.in_features}, out={self.base.out_features}, module={self.name!r}"


class GatheredEncoder:
    """A structural copy of a plain encoder (sharing its weights) whose LoRA-targeted linear layers read the bank.

    `set_bank` swaps the bank (wrapping layers a new adapter targets); `forward` runs one batch with each row's
    slot indices. Not thread-safe: the engine calls both from one forward lock."""

    def __init__(self, encoder: nn.Module):
        self.model = share_copy(encoder).eval()
        self.state = BankState()

    @property
    def bank(self) -> LoraBank:
        return self.state.bank

    def set_bank(self, bank: LoraBank) -> None:
        for module in bank.modules:
            layer = self.model.get_submodule(module)
            if not isinstance(layer, BankedLinear):
                parent_name, _, child = module.rpartition(".")
                parent = self.model.get_submodule(parent_name) if parent_name else self.model
                setattr(parent, child, BankedLinear(layer, module, self.state))
        self.state.bank = bank

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        slots: Sequence[Sequence[int]],
        output_hidden_states: bool = False,
    ):
        """The encoder's outputs for a batch whose row j runs through the adapters in slots ``slots[j]`` (slot
        indices of the current bank; an empty list: the bare encoder)."""
        depth = max((len(s) for s in slots), default=0)
        index = None
        if depth and any(any(s) for s in slots):
            padded = [list(s) + [NO_ADAPTER] * (depth - len(s)) for s in slots]
            index = torch.tensor(padded, dtype=torch.long, device=input_ids.device)
        self.state.slots = index
        try:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=output_hidden_states
            )
        finally:
            self.state.slots = None
