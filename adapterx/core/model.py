"""`AdaptedModel`: the frozen backbone, the adapters attached to it, and the task heads.

The encoder may be wrapped by an adapter library (peft) or changed in place (the adapters library); the
model keeps that detail inside `adapterx.methods` and offers one API: attach/activate adapters, pick a head,
run forward. Each attached adapter's record holds its kind's Method, so this module needs no import of methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adapterx.core.backbone import Backbone
from adapterx.core.errors import CompositionError, unknown
from adapterx.core.heads import Head, HeadSpec, build_head


@dataclass
class TaskOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


@dataclass
class AdapterRecord:
    """What the model knows of an attached adapter: its kind, spec and the metadata it was saved with."""

    name: str
    kind: str
    spec: object
    method: Any  # the kind's `adapterx.methods.Method` (held here so that core never imports methods)
    metadata: dict = field(default_factory=dict)


class AdaptedModel(nn.Module):
    def __init__(self, backbone: Backbone):
        super().__init__()
        backbone.claim()
        self.backbone = backbone
        self.encoder: nn.Module = backbone.model
        self.heads = nn.ModuleDict()
        self.active_head: str | None = None
        self.adapters: dict[str, AdapterRecord] = {}
        self.active_adapters: list[str] = []
        self.family: str | None = None  # the adapter library in use ("peft" | "adapters"); one per model

    # ---------------------------------------------------------------- adapter library
    def use_library(self, family: str, encoder: nn.Module | None = None) -> None:
        """Record that adapter library `family` now drives the encoder, and the module that runs it: a wrapper
        around the backbone (peft's), or None when the library changed the backbone in place (the adapters
        library). Called by a kind's Method when it attaches the model's first adapter; one library per model."""
        if self.family not in (None, family):
            raise CompositionError(
                f"this model already carries {self.family!r}-library adapters; {family!r}-library "
                f"adapters cannot be added to the same model (one adapter library per model)"
            )
        self.family = family
        if encoder is not None:
            self.encoder = encoder

    # ---------------------------------------------------------------- heads
    def add_head(self, name: str, spec: HeadSpec) -> Head:
        head = build_head(self.backbone.hidden_size, spec)
        head.to(device=self.device, dtype=self.backbone.model.dtype)
        self.heads[name] = head
        self.active_head = name
        return head

    def set_head(self, name: str) -> None:
        if name not in self.heads:
            raise unknown("head", name, self.heads.keys())
        self.active_head = name

    @property
    def head(self) -> Head:
        if self.active_head is None:
            raise RuntimeError("no task head: add one with add_head() or load an adapter that carries one")
        return self.heads[self.active_head]

    @property
    def device(self) -> torch.device:
        return next(self.backbone.model.parameters()).device

    # ---------------------------------------------------------------- forward
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs):
        """Encoder outputs with the active adapters (hidden states for heads and retrieval pooling).

        `last_hidden_state` (and `hidden_states`, if asked for) have one position per input token, aligned with
        `attention_mask`: positions an active adapter puts in front (prompt tuning's virtual tokens, see
        `Method.encoder_output_offset`) are dropped here. `attentions`, if asked for, are left whole."""
        outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if getattr(outputs, "last_hidden_state", None) is None:  # return_dict=False: left as the encoder gave it
            return outputs
        offset = sum(self.adapters[n].method.encoder_output_offset(self, n) for n in self.active_adapters)
        if offset:
            outputs.last_hidden_state = outputs.last_hidden_state[:, offset:]
            if getattr(outputs, "hidden_states", None) is not None:
                outputs.hidden_states = tuple(h[:, offset:] for h in outputs.hidden_states)
        if outputs.last_hidden_state.shape[1] != input_ids.shape[1]:
            raise RuntimeError(
                f"encoder returned {outputs.last_hidden_state.shape[1]} positions for {input_ids.shape[1]} input "
                f"tokens with active adapters {self.active_adapters}: activate adapters with store.activate so "
                f"that the model knows which are in use"
            )
        return outputs

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        head: str | None = None,
        **batch,
    ) -> TaskOutput:
        """Logits of head `head` (default: the active head); the loss too when `labels` are given."""
        task_head = self.heads[head] if head is not None else self.head
        hidden = self.encode(input_ids, attention_mask).last_hidden_state
        logits = task_head(hidden, attention_mask, **batch)
        loss = task_head.loss(logits, labels) if labels is not None else None
        return TaskOutput(logits=logits, loss=loss)

    # ---------------------------------------------------------------- accounting
    def parameter_counts(self) -> dict[str, int]:
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        base = sum(t.numel() for t in self.backbone.base_tensors.values())
        return {"trainable": trainable, "total": total, "base": base}
