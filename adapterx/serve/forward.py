"""One batch of prepared rows through the model: the gathered rows (every adapter in the bank, stacks and the
bare encoder) in ONE encoder forward, each other adapter's rows in one sub-batch of their own; then each row's
head (rows of one head together) or pooled states, and its decoded answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from adapterx.core.heads import mean_pool
from adapterx.serve.adapters import ServedAdapter
from adapterx.serve.answers import decode
from adapterx.serve.bank import GatheredEncoder
from adapterx.serve.rows import Work

GATHERED = "gathered"


@dataclass
class BatchResult:
    """The answers of one batch (in the order of its rows) and what the batch was: rows, model sequences, tokens
    (real and as padded, summed over forwards), encoder forwards, and the distinct programs its rows named
    ("" is the bare encoder)."""

    answers: list[dict]
    rows: int = 0
    sequences: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    forwards: int = 0
    programs: list[str] = field(default_factory=list)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _groups(works: Sequence[Work]) -> dict[object, list[tuple[Work, int]]]:
    """(work, sequence index) pairs per forward: GATHERED, or the adapter whose own model runs them."""
    groups: dict[object, list[tuple[Work, int]]] = {}
    for work in works:
        key = GATHERED if work.program.shared else work.program.top
        for i in range(len(work.sequences)):
            groups.setdefault(key, []).append((work, i))
    return groups


def _encode(key, members, gathered: GatheredEncoder, pad_id: int, device):
    ids, mask = _pad([w.sequences[i] for w, i in members], pad_id, device)
    states = any(w.row.kind == "embed" and w.row.layer != -1 for w, _ in members)
    if key == GATHERED:
        bank = gathered.bank
        slots = [[bank.index(k) for k in w.program.slots] for w, _ in members]
        out = gathered.forward(ids, mask, slots, output_hidden_states=states)
    else:
        assert isinstance(key, ServedAdapter) and key.model is not None
        out = key.model.encode(ids, mask, output_hidden_states=states)
    return ids, mask, out


def _heads(members, hidden: torch.Tensor, mask: torch.Tensor, outputs: dict) -> None:
    by_head: dict[ServedAdapter, list[int]] = {}
    for r, (work, _) in enumerate(members):
        if work.row.kind != "embed":
            by_head.setdefault(work.program.top, []).append(r)  # type: ignore[arg-type]
    for entry, rows in by_head.items():
        index = torch.tensor(rows, device=hidden.device)
        logits = entry.head(hidden.index_select(0, index), mask.index_select(0, index))  # type: ignore[misc]
        token_level = logits.dim() == 3
        for k, r in enumerate(rows):
            work, i = members[r]
            length = len(work.sequences[i])
            outputs[id(work)][i] = logits[k, :length] if token_level else logits[k]


def _pool(members, out, mask: torch.Tensor, outputs: dict) -> None:
    by_layer: dict[int, list[int]] = {}
    for r, (work, _) in enumerate(members):
        if work.row.kind == "embed":
            by_layer.setdefault(work.row.layer, []).append(r)
    for layer, rows in by_layer.items():
        states = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        index = torch.tensor(rows, device=mask.device)
        pooled = mean_pool(states.index_select(0, index), mask.index_select(0, index))
        for k, r in enumerate(rows):
            outputs[id(members[r][0])] = pooled[k]


@torch.inference_mode()
def run_batch(works: Sequence[Work], gathered: GatheredEncoder, pad_id: int, device) -> BatchResult:
    """Answers for `works` (see the module docstring). Call with the engine's forward lock held."""
    outputs: dict[int, object] = {id(w): [None] * len(w.sequences) for w in works}
    result = BatchResult([], rows=len(works))
    for key, members in _groups(works).items():
        ids, mask, out = _encode(key, members, gathered, pad_id, device)
        _heads(members, out.last_hidden_state, mask, outputs)
        _pool(members, out, mask, outputs)
        result.forwards += 1
        result.sequences += len(members)
        result.tokens += int(mask.sum())
        result.padded_tokens += mask.numel()
    result.answers = [decode(w, outputs[id(w)]) for w in works]
    result.programs = list(dict.fromkeys(w.program.name for w in works))
    return result
