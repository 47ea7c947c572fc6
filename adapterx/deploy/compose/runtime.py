"""`ComposedModel`: the frozen base with a composition's adapters attached and active, and the head that reads
it; mixed batches (one adapter per row) through the adapters' kind, or through adapterx.deploy.fastlora's
gathered low-rank product for mergeable kinds (``fast=True``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapterx import store
from adapterx.core.backbone import Backbone
from adapterx.core.errors import AdapterFileError, CompositionError, unknown
from adapterx.core.lowrank import LoraFactors
from adapterx.core.model import AdaptedModel
from adapterx.deploy import fastlora
from adapterx.deploy.compose.blocks import Block, Mixed
from adapterx.deploy.compose.manifest import save_manifest
from adapterx.deploy.compose.parts import Part
from adapterx.deploy.forms import fused_form
from adapterx.deploy.plain import plain_base_copy


@dataclass
class ComposedModel:
    """The frozen base with the composition's adapters attached and active, and the head that reads it."""

    model: AdaptedModel
    composition: Block
    parts: dict[str, Part]
    head: str | None
    active: list[str]  # adapter names active in `model` (a weighted merge adds one)
    _gathered: object = field(default=None, repr=False)

    @property
    def backbone(self) -> Backbone:
        return self.model.backbone

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **batch) -> torch.Tensor:
        """Logits of the composition's head (for Mixed, use `forward_rows`)."""
        if isinstance(self.composition, Mixed):
            raise CompositionError("a mixed composition needs the adapter of each row: call forward_rows(...)")
        if self.head is None:
            raise CompositionError(f"{self.composition}: no part carries a head; use encode() for hidden states")
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **batch).logits

    @torch.no_grad()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode(input_ids, attention_mask).last_hidden_state

    @torch.no_grad()
    def forward_rows(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, row_adapters: Sequence[str], *, fast: bool = False
    ) -> list[torch.Tensor]:
        """One encoder pass over a batch whose row j uses adapter ``row_adapters[j]``; row j's logits come
        from that adapter's head. ``fast=True`` (plain low-rank kinds: LoRA, not DoRA) uses `adapterx.deploy.fastlora`'s gathered
        low-rank product instead of the library's per-adapter sub-batches (peft #2283); it builds a second, plain
        copy of the base once."""
        names = self.composition.names()
        if len(row_adapters) != input_ids.shape[0]:
            raise CompositionError(f"{len(row_adapters)} row adapters for a batch of {input_ids.shape[0]} rows")
        for n in row_adapters:
            if n not in names:
                raise unknown("adapter", n, names)
        rows = list(row_adapters)
        if fast and all(self.model.adapters[n].method.is_low_rank(self.model.adapters[n].spec) for n in names):
            hidden = self._gathered_rows(input_ids, attention_mask, rows)
        else:
            hidden = self.parts[names[0]].method.encode_rows(self.model, input_ids, attention_mask, rows)
        out: list[torch.Tensor | None] = [None] * len(rows)
        for name in dict.fromkeys(rows):
            at = [j for j, n in enumerate(rows) if n == name]
            if name not in self.model.heads:
                raise AdapterFileError(
                    self.parts[name].path / store.METADATA_FILE,
                    f"adapter {name!r} was saved without a head, so its rows have no logits",
                )
            index = torch.tensor(at, device=hidden.device)
            logits = self.model.heads[name](hidden.index_select(0, index), attention_mask.index_select(0, index))
            for k, j in enumerate(at):
                out[j] = logits[k]
        return out  # type: ignore[return-value]

    def _gathered_rows(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: list[str]) -> torch.Tensor:
        if self._gathered is None:
            names = self.composition.names()
            self._gathered = fastlora.apply_gathered_lora(
                plain_base_copy(self.model), row_factors(self.model, names), names
            ).eval()
        gathered = self._gathered
        return gathered(
            input_ids=input_ids, attention_mask=attention_mask, adapter_ids=gathered.adapter_ids(rows)
        ).last_hidden_state

    def fused(self) -> AdaptedModel | None:
        """The composition as plain modules on a plain copy of the base, no adapter library at inference
        (`adapterx.deploy.forms.fused_form`: LoRA as one low-rank product per layer, a bottleneck stack as one
        module per sub-layer); the same logits up to float error. None for a mixed batch or a bottleneck
        average, whose arithmetic it does not reproduce."""
        return None if isinstance(self.composition, Mixed) else fused_form(self.model)

    def parameter_counts(self) -> dict:
        """Base, per-part adapter and head parameter counts, and what is active."""
        base = sum(t.numel() for t in self.backbone.base_tensors.values())
        adapters = {n: _adapter_size(self.model, n) for n in self.model.adapters}
        heads = {n: sum(p.numel() for p in h.parameters()) for n, h in self.model.heads.items()}
        active = sum(adapters[n] for n in self.active)
        return {
            "base": base,
            "adapters": adapters,
            "heads": heads,
            "active_adapters": active,
            "head": heads.get(self.head, 0) if self.head else sum(heads.values()),
        }

    def describe(self) -> str:
        lines = [f"{self.composition} on {self.backbone.name} ({self.backbone.fingerprint})"]
        counts = self.parameter_counts()
        for p in self.parts.values():
            role = (
                "head used"
                if p.name == self.head
                else (
                    "own head per row"
                    if isinstance(self.composition, Mixed) and p.head
                    else ("head ignored" if p.head else "no head")
                )
            )
            lines.append(
                f"  {p.name:<12} {p.kind} ({_spec_text(p.metadata['spec'])}) task {p.metadata.get('task')!r} "
                f"labels {p.labels or '-'}: {counts['adapters'][p.name]:,} adapter params, {role}  "
                f"[{p.path}]"
            )
        for n in self.active:
            if n not in self.parts:
                lines.append(f"  {n:<12} (made by the weighted merge) {counts['adapters'][n]:,} adapter params")
        lines.append(_parameters_line(counts, isinstance(self.composition, Mixed)))
        return "\n".join(lines)

    def save(self, path: str | Path, *, copy_parts: bool | None = None) -> Path:
        return save_manifest(self, path, copy_parts=copy_parts)


def _spec_text(spec: dict) -> str:
    """'r=4, alpha=8.0, ...': the saved spec's fields, lists joined by '+', empty ones left out."""
    shown = {k: "+".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in spec.items() if k != "kind"}
    return ", ".join(f"{k}={v}" for k, v in shown.items() if v not in ("", None))


def _parameters_line(counts: dict, mixed: bool) -> str:
    if mixed:
        per_row = max(counts["adapters"].values())
        share = 100.0 * (sum(counts["adapters"].values()) + counts["head"]) / counts["base"]
        return (
            f"parameters: base {counts['base']:,}; adapters {sum(counts['adapters'].values()):,} "
            f"(one per row, at most {per_row:,}); heads {counts['head']:,} (+{share:.2f}% over the "
            f"base, all adapters and heads held)"
        )
    share = 100.0 * (counts["active_adapters"] + counts["head"]) / counts["base"]
    return (
        f"parameters: base {counts['base']:,}; active adapters {counts['active_adapters']:,}; "
        f"head {counts['head']:,} (+{share:.2f}% over the base)"
    )


def _adapter_size(model: AdaptedModel, name: str) -> int:
    state = model.adapters[name].method.adapter_state(model, name)
    return sum(t.numel() for t in state.values())


def row_factors(model: AdaptedModel, names: list[str]) -> dict[str, list[LoraFactors]]:
    """Per module, the low-rank factors of every adapter in `names`, in order; an adapter that does not touch a
    module gets zero factors there (adds nothing), so adapters with different target modules share one batch."""
    each = {n: model.adapters[n].method.lora_factors(model, n) for n in names}
    modules = list(dict.fromkeys(m for n in names for m in each[n]))
    out = {}
    for m in modules:
        like = next(each[n][m] for n in names if m in each[n])
        zero = LoraFactors(like.A.new_zeros(1, like.in_features), like.B.new_zeros(like.out_features, 1))
        out[m] = [each[n][m] if m in each[n] else zero for n in names]
    return out
