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

from adapterx.core.errors import unknown


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
    """XLM-R's sequence-classification head: dense + tanh + projection on the first (<s>) token.

    Option ``pooling: mean`` averages the unpadded tokens instead; the built-in tasks use it because the <s>
    state of a randomly initialised (not pretrained) encoder carries little of the input.
    """

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.pooling = spec.options.get("pooling", "cls")
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"classification head: pooling must be 'cls' or 'mean', got {self.pooling!r}")
        self.dropout = nn.Dropout(spec.options.get("dropout", 0.1))
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, spec.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        else:
            pooled = hidden[:, 0]
        x = self.dropout(pooled)
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


@register_head("tagging")
class TaggingHead(Head):
    """Token classification (POS, NER, CCG supertags): a projection of every token's hidden state. Labels sit on
    each word's first sub-word and are -100 elsewhere, so the loss sees one decision per word."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.dropout = nn.Dropout(spec.options.get("dropout", 0.1))
        self.classifier = nn.Linear(hidden_size, spec.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


@register_head("span_qa")
class SpanQAHead(Head):
    """Extractive QA: start and end logits per token, logits shaped (batch, tokens, 2). `labels` are
    (batch, 2) token indices of the answer's start and end (0, the <s> token, when the window lacks it)."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        logits = self.qa_outputs(hidden)
        # padding can never be a span end point
        return logits.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(logits.dtype).min)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        start, end = logits.float().unbind(-1)
        positions = labels.clamp(0, logits.shape[1] - 1)
        return (F.cross_entropy(start, positions[:, 0]) + F.cross_entropy(end, positions[:, 1])) / 2


@register_head("multiple_choice")
class MultipleChoiceHead(Head):
    """Multiple choice: each (context, choice) pair is one row of the encoder batch; a score per row is
    reshaped to (batch, choices). `num_labels` is the number of choices."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.dropout = nn.Dropout(spec.options.get("dropout", 0.1))
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.scorer = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        x = self.dropout(torch.tanh(self.dense(self.dropout(hidden[:, 0]))))
        return self.scorer(x).view(-1, self.spec.num_labels)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over the real tokens (special tokens included, as XTREME's retrieval does)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


@register_head("retrieval")
class RetrievalHead(Head):
    """Sentence retrieval needs no trained head: a parameter-free mean pool of the hidden states it is given.
    (Evaluation pools a chosen layer, see `adapterx.tasks.processing.RetrievalProcessor`.)"""

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        return mean_pool(hidden, attention_mask)
