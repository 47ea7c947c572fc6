"""From raw rows to model inputs and back to scores, one `Processor` per head kind.

A processor knows how to encode a split for its head kind (tokenise, align labels), collate a batch, turn
logits into predictions and score them with the task's metric. Tasks only name their head kind.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from adapterx.errors import AdapterxError, unknown
from adapterx.tasks.base import Task
from adapterx.tasks.metrics import get_metric


class Processor:
    """Base: override encode/predict/score for a head kind."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        raise NotImplementedError

    def collator(self, tokenizer: PreTrainedTokenizerBase):
        return DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return logits.argmax(-1).tolist()

    def score(self, task: Task, predictions: list, encoded: datasets.Dataset, rows: datasets.Dataset) -> dict:
        return get_metric(task.metric)(predictions, encoded["labels"])


class ClassificationProcessor(Processor):
    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        missing = [f for f in (*task.text_fields, task.label_field) if f not in rows.column_names]
        if missing:
            raise AdapterxError(f"task {task.name!r}: data has no field(s) {missing}; fields: {rows.column_names}")
        labels = rows[task.label_field]
        bad = sorted({lab for lab in labels if not (isinstance(lab, int) and 0 <= lab < task.num_labels)})
        if bad:
            raise AdapterxError(f"task {task.name!r}: labels {bad[:5]} outside 0..{task.num_labels - 1} "
                                f"({', '.join(task.labels)})")

        def tokenize(batch):
            texts = [batch[f] for f in task.text_fields]
            out = tokenizer(*texts, truncation=True, max_length=task.max_length)
            out["labels"] = batch[task.label_field]
            return out

        return rows.map(tokenize, batched=True, remove_columns=rows.column_names, desc=f"encode {task.name}")


PROCESSORS: dict[str, Processor] = {"classification": ClassificationProcessor()}


def processor_for(task: Task) -> Processor:
    if task.head not in PROCESSORS:
        raise unknown("head kind (no processor)", task.head, PROCESSORS)
    return PROCESSORS[task.head]
