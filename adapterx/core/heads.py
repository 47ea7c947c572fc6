"""Task heads: small trainable modules on top of the frozen encoder's hidden states.

Heads live in adapterx, not in peft (``task_type=None``) or the adapters library, so that one head works with
every adapter kind and several adapters can be active at once (docs/architecture.md). A head is saved beside
its adapter as ``head.safetensors`` with its spec in ``adapterx.json``.

Adding a head kind is one registration: subclass `Head` and decorate it with
``@register_head("kind", processor=..., transformers=...)``. The entry (`HeadKind`) holds everything the other
layers need: the module, the `Processor` that turns the task's rows into batches and logits into scores (the tasks
layer's; given as an object or as a lazy ``"module:attr"``), and optionally its transformers twin (an
``AutoModelFor...`` class with the same math, into which `adapterx merge` saves it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import torch
from torch import nn
from torch.nn import functional as F

from adapterx.core.registry import Registry, resolve


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


@dataclass(frozen=True)
class TransformersTwin:
    """A transformers model class with the same math as an adapterx head on one architecture: a merged checkpoint
    with this head loads with plain transformers (``loader.from_pretrained``)."""

    model_class: str  # e.g. "XLMRobertaForSequenceClassification" (an attribute of transformers)
    loader: str  # the Auto class that loads it
    names: Mapping[str, str]  # head state-dict prefix -> where it goes in the transformers state dict
    fits: Callable[[HeadSpec], str] = lambda spec: ""  # "" if the head's options have that math, else why not
    problem_type: str | None = None  # config.problem_type to record

    def state(self, head_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The head's tensors under the transformers model's names."""
        out = {}
        for key, tensor in head_state.items():
            prefix = next(p for p in self.names if key.startswith(p))
            out[self.names[prefix] + key[len(prefix) :]] = tensor
        return out


@dataclass
class HeadKind:
    """One head kind: its module, its processor (tasks layer) and its transformers twin (None: the head is saved
    beside the encoder when merged)."""

    module: type[Head]
    processor_ref: object  # a Processor, a Processor class, or "module:attr" naming one
    transformers: Mapping[str, TransformersTwin] = field(default_factory=dict)  # by config.model_type

    @cached_property
    def processor(self):
        """The processor object (imported and instantiated on first use)."""
        obj = (
            resolve(self.processor_ref, f"head kind processor {self.processor_ref}")
            if isinstance(self.processor_ref, str)
            else self.processor_ref
        )
        return obj() if isinstance(obj, type) else obj


HEADS: Registry[HeadKind] = Registry("head kind", group="adapterx.heads")


def register_head(
    kind: str, *, processor: object, transformers: Mapping[str, TransformersTwin] | None = None
) -> Callable[[type[Head]], type[Head]]:
    """Class decorator: register a Head subclass as `kind`, with its processor and transformers twin."""

    def decorate(cls: type[Head]) -> type[Head]:
        HEADS.register(kind, HeadKind(cls, processor, dict(transformers or {})))
        return cls

    return decorate


def build_head(hidden_size: int, spec: HeadSpec) -> Head:
    return HEADS.get(spec.kind).module(hidden_size, spec)


def _cls_pooling(spec: HeadSpec) -> str:
    pooling = spec.options.get("pooling", "cls")
    return (
        ""
        if pooling == "cls"
        else (
            f"the classification head pools by {pooling!r}; transformers' "
            f"sequence-classification models read the first token only"
        )
    )


_PROCESSING = "adapterx.tasks.processing"


def _sequence_twin(model_class: str, names: Mapping[str, str]) -> TransformersTwin:
    return TransformersTwin(
        model_class, "AutoModelForSequenceClassification", names, _cls_pooling, "single_label_classification"
    )


# adapterx ClassificationHead (dense + tanh + out_proj on the first token) is RobertaClassificationHead on
# (XLM-)RoBERTa, and BERT's pooler (dense + tanh on [CLS]) + classifier on BERT
@register_head(
    "classification",
    processor=f"{_PROCESSING}:ClassificationProcessor",
    transformers={
        "xlm-roberta": _sequence_twin("XLMRobertaForSequenceClassification", {"": "classifier."}),
        "roberta": _sequence_twin("RobertaForSequenceClassification", {"": "classifier."}),
        "bert": _sequence_twin(
            "BertForSequenceClassification", {"dense.": "bert.pooler.dense.", "out_proj.": "classifier."}
        ),
    },
)
class ClassificationHead(Head):
    """XLM-R's sequence-classification head: dense + tanh + projection on the first (<s>) token (on BERT the
    same math is its pooler + classifier).

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


# adapterx TaggingHead == *ForTokenClassification: one linear `classifier` on every token, on all three
@register_head(
    "tagging",
    processor="adapterx.tasks.tagging:TaggingProcessor",
    transformers={
        model_type: TransformersTwin(f"{prefix}ForTokenClassification", "AutoModelForTokenClassification", {"": ""})
        for model_type, prefix in (("xlm-roberta", "XLMRoberta"), ("roberta", "Roberta"), ("bert", "Bert"))
    },
)
class TaggingHead(Head):
    """Token classification (POS, NER, CCG supertags): a projection of every token's hidden state. Labels sit on
    each word's first sub-word and are -100 elsewhere, so the loss sees one decision per word."""

    def __init__(self, hidden_size: int, spec: HeadSpec):
        super().__init__(hidden_size, spec)
        self.dropout = nn.Dropout(spec.options.get("dropout", 0.1))
        self.classifier = nn.Linear(hidden_size, spec.num_labels)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


@register_head("span_qa", processor=f"{_PROCESSING}:SpanQAProcessor")
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


@register_head("multiple_choice", processor=f"{_PROCESSING}:MultipleChoiceProcessor")
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


@register_head("retrieval", processor="adapterx.tasks.retrieval:RetrievalProcessor")
class RetrievalHead(Head):
    """Sentence retrieval needs no trained head: a parameter-free mean pool of the hidden states it is given.
    (Evaluation pools a chosen layer, see `adapterx.tasks.processing.RetrievalProcessor`.)"""

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        return mean_pool(hidden, attention_mask)
