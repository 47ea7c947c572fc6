"""The `Processor` base class every head kind's processor derives from, and the helpers they share.

A processor knows how to encode a split for its head kind (tokenise, align labels), collate a batch, turn
logits into predictions and score them with the task's metric. The processors themselves live in
`adapterx.tasks.processing` (classification, span QA, multiple choice), `adapterx.tasks.tagging` and
`adapterx.tasks.retrieval`.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from adapterx.core.errors import AdapterxError
from adapterx.tasks.base import Task
from adapterx.tasks.metrics import get_metric

MODEL_INPUTS = ("input_ids", "attention_mask", "labels")


class Processor:
    """Base: override encode/predict/score for a head kind; `evaluate` runs them all."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        raise NotImplementedError

    def collator(self, tokenizer: PreTrainedTokenizerBase):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return logits.argmax(-1).tolist()

    def score(self, task: Task, predictions: list, encoded: datasets.Dataset, rows: datasets.Dataset) -> dict:
        return get_metric(task.metric)(predictions, encoded["labels"])

    def evaluate(
        self,
        model,
        task: Task,
        rows: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 32,
        **options,
    ) -> dict[str, float]:
        """encode → batches → model(**batch).logits → predict → score. Call under inference mode, model.eval()."""
        encoded = self.encode(task, rows, tokenizer)
        loader = DataLoader(encoded, batch_size=batch_size, collate_fn=self.collator(tokenizer))
        predictions: list = []
        for batch in loader:
            batch = {k: v.to(model.device) for k, v in batch.items()}
            batch.pop("labels", None)
            predictions.extend(self.predict(model(**batch).logits, batch))
        return self.score(task, predictions, encoded, rows)


def max_length_for(task: Task, tokenizer: PreTrainedTokenizerBase) -> int:
    return min(task.max_length, tokenizer.model_max_length)


def require_columns(task: Task, rows: datasets.Dataset, fields) -> None:
    missing = [f for f in fields if f not in rows.column_names]
    if missing:
        raise AdapterxError(f"task {task.name!r}: data has no field(s) {missing}; fields: {rows.column_names}")


class PadCollator:
    """Right-pads input_ids/attention_mask (and per-token labels with -100); drops every other column, so a
    batch holds model inputs only. Labels of fixed shape (one per row, or a start/end pair) are stacked."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, token_labels: bool = False):
        self.pad_id = tokenizer.pad_token_id
        self.token_labels = token_labels

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([list(f[key]) + [value] * (width - len(f[key])) for f in features])

        batch = {"input_ids": pad("input_ids", self.pad_id), "attention_mask": pad("attention_mask", 0)}
        if "labels" in features[0]:
            batch["labels"] = (
                pad("labels", -100) if self.token_labels else torch.tensor([f["labels"] for f in features])
            )
        return batch
