"""Task heads: small trainable modules on top of the frozen encoder's hidden states.

Heads live in adapterx, not in peft (``task_type=None``) or the adapters library, so that one head works with
every adapter kind and several adapters can be active at once (see DESIGN.md, pitfalls). A head is saved
beside its adapter as ``head.safetensors`` with its spec in ``adapterx.json``.

Adding a head kind: subclass `Head`, decorate it with ``@register_head("kind")``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from adapterx.errors import unknown


@dataclass(frozen=True)
class HeadSpec:
    """What is needed to rebuild a head: its kind, label count and options (all JSON-serialisable)."""

    kind: str
    num_labels: int
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "HeadSpec":
        return cls(kind=data["kind"], num_labels=int(data["num_labels"]), options=dict(data.get("options", {})))


class Head(nn.Module):
    """Maps encoder hidden states (batch, tokens, hidden) to logits; knows its own loss."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__()
        self.spec = spec

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


HEADS: dict[str, type[Head]] = {}


def register_head(kind: str) -> Callable[[type[Head]], type[Head]]:
    def decorate(cls: type[Head]) -> type[Head]:
        HEADS[kind] = cls
        return cls
    return decorate


def build_head(hidden_size: int, spec: HeadSpec) -> Head:
    if spec.kind not in HEADS:
        raise unknown("head kind", spec.kind, HEADS)
    return HEADS[spec.kind](hidden_size, spec)


@register_head("classification")
class ClassificationHead(Head):
    """XLM-R's sequence-classification head: dense + tanh + projection on the first (<s>) token."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.dropout = nn.Dropout(spec.options.get("dropout", 0.1))
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, spec.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        x = self.dropout(hidden[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)
