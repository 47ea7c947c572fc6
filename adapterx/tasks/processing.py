"""From raw rows to model inputs and back to scores, one `Processor` per head kind (registered with the head
kind itself, see adapterx.core.heads.register_head).

A processor knows how to encode a split for its head kind (tokenise, align labels), collate a batch, turn
logits into predictions and score them with the task's metric. Tasks only name their head kind.

Rows reach a processor already normalised by the task's loader (see `adapterx.tasks.sources`):

  classification   the task's `text_fields` and an integer `label_field`
  tagging          tokens: list[str], tags: list[int]  (indices into `task.labels`; `adapterx.tasks.tagging`)
  span_qa          id, context, question, answers{text: [...], answer_start: [...]}, language
  multiple_choice  context: str, choices: list[str] (one second segment per choice), label: int
  retrieval        source_id, source_sentence, target_id, target_sentence (a gold pair shares a row; an
                   unpaired sentence leaves the other side empty; see `adapterx.tasks.retrieval`)

The one entry point for evaluation is `evaluate_on_split(model, task, rows, tokenizer)`: it runs
encode → batches → model → predict → score for every head kind (retrieval included, whose model is the
encoder's hidden states). Training uses `encode` and `collator`: every collated batch holds only
``input_ids``, ``attention_mask`` and ``labels``, so ``model(**batch).loss`` works for every trainable kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from adapterx.core.errors import AdapterxError
from adapterx.core.heads import HEADS
from adapterx.tasks.base import Task
from adapterx.tasks.data import load_split
from adapterx.tasks.metrics import get_metric
from adapterx.tasks.offsets import cover_absorbed_marks
from adapterx.tasks.processor import MODEL_INPUTS, PadCollator, Processor, max_length_for, require_columns
from adapterx.tasks.retrieval import RetrievalProcessor, mine_pairs, nearest
from adapterx.tasks.tagging import TaggingProcessor


# ------------------------------------------------------------------------------------------ classification
class ClassificationProcessor(Processor):
    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        missing = [f for f in (*task.text_fields, task.label_field) if f not in rows.column_names]
        if missing:
            raise AdapterxError(f"task {task.name!r}: data has no field(s) {missing}; fields: {rows.column_names}")
        labels = rows[task.label_field]
        bad = sorted({lab for lab in labels if not (isinstance(lab, int) and 0 <= lab < task.num_labels)})
        if bad:
            raise AdapterxError(
                f"task {task.name!r}: labels {bad[:5]} outside 0..{task.num_labels - 1} ({', '.join(task.labels)})"
            )

        def tokenize(batch):
            texts = [batch[f] for f in task.text_fields]
            out = tokenizer(*texts, truncation=True, max_length=max_length_for(task, tokenizer))
            out["labels"] = batch[task.label_field]
            return out

        return rows.map(tokenize, batched=True, remove_columns=rows.column_names, desc=f"encode {task.name}")


# ------------------------------------------------------------------------------------------ span QA
class SpanQAProcessor(Processor):
    """SQuAD-style extractive QA. Long contexts are cut into windows of `max_length` tokens overlapping by
    `doc_stride` tokens (capped at a third of the window); training labels are the answer's start/end token
    (0, the <s> token, when a window lacks the answer). Predictions are the best valid span over all windows
    of a question (start + end logit, n-best 20, at most `max_answer_length` tokens), as text.

    Task options: doc_stride (128), max_query_length (64 tokens), max_answer_length (30), n_best (20)."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        require_columns(task, rows, ("context", "question", "answers"))
        settings = qa_settings(task, tokenizer)

        def tokenize(batch, indices):
            out = qa_windows(tokenizer, batch["question"], batch["context"], **settings)
            out["labels"] = [
                _answer_tokens(batch["answers"][example], offsets)
                for offsets, example in zip(out["offset_mapping"], out["example_index"])
            ]
            out["example_index"] = [indices[example] for example in out["example_index"]]
            return out

        return rows.map(
            tokenize, batched=True, with_indices=True, remove_columns=rows.column_names, desc=f"encode {task.name}"
        )

    def collator(self, tokenizer):
        return PadCollator(tokenizer)

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return list(logits.float().cpu().numpy())

    def postprocess(
        self, task: Task, predictions: list, encoded: datasets.Dataset, rows: datasets.Dataset
    ) -> list[str]:
        """The answer text of each row: the best span over its windows."""
        n_best = task.options.get("n_best", 20)
        max_answer = task.options.get("max_answer_length", 30)
        best: dict[int, tuple[float, int, int]] = {}
        contexts = rows["context"]
        for logits, offsets, example in zip(predictions, encoded["offset_mapping"], encoded["example_index"]):
            found = best_span(logits, offsets, n_best, max_answer)
            if found is not None and (example not in best or found[0] > best[example][0]):
                best[example] = found
        return [contexts[i][best[i][1] : best[i][2]].strip() if i in best else "" for i in range(len(rows))]

    def score(self, task, predictions, encoded, rows) -> dict:
        answers = self.postprocess(task, predictions, encoded, rows)
        language = rows["language"][0] if "language" in rows.column_names and len(rows) else "en"
        return get_metric(task.metric)(answers, [a["text"] for a in rows["answers"]], language=language)


def qa_settings(task: Task, tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The window settings of `task` (keyword arguments of `qa_windows`): its max_length, a doc_stride capped at a
    third of the window, and max_query_length."""
    max_length = max_length_for(task, tokenizer)
    return {
        "max_length": max_length,
        "stride": min(task.options.get("doc_stride", 128), max_length // 3),
        "max_query": task.options.get("max_query_length", 64),
    }


def qa_windows(
    tokenizer: PreTrainedTokenizerBase,
    questions: list[str],
    contexts: list[str],
    *,
    max_length: int,
    stride: int,
    max_query: int,
) -> dict[str, list]:
    """(question, context) pairs as windows of at most `max_length` tokens overlapping by `stride`: input_ids,
    attention_mask, offset_mapping (each context token's character span in its context, widened over accents the
    normaliser composed; [-1, -1] on question and special tokens) and example_index (the pair each window is
    of). Evaluation (`SpanQAProcessor`) and serving (`adapterx.serve`) both window through here."""
    questions = [_truncate_question(q.strip(), tokenizer, max_query) for q in questions]
    out = tokenizer(
        questions,
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    whole = tokenizer(list(contexts), add_special_tokens=False, return_offsets_mapping=True)
    sample_map = out.pop("overflow_to_sample_mapping")
    offsets_out = []
    for i, offsets in enumerate(out["offset_mapping"]):
        sequence_ids = out.sequence_ids(i)
        example = sample_map[i]
        offsets = _context_offsets(contexts[example], offsets, sequence_ids, whole["offset_mapping"][example])
        offsets_out.append([list(o) if s == 1 else [-1, -1] for o, s in zip(offsets, sequence_ids)])
    return {
        "input_ids": out["input_ids"],
        "attention_mask": out["attention_mask"],
        "offset_mapping": offsets_out,
        "example_index": list(sample_map),
    }


def best_span(logits: np.ndarray, offsets, n_best: int = 20, max_answer: int = 30) -> tuple[float, int, int] | None:
    """The best answer span of one window as (start logit + end logit, start char, end char), None if no valid
    span: among the `n_best` highest start and end logits, context tokens only, end not before start, at most
    `max_answer` tokens (SQuAD's postprocessing). The first of equal scores wins."""
    length = len(offsets)
    start_logits, end_logits = logits[:length, 0], logits[:length, 1]
    starts = np.argsort(start_logits)[::-1][:n_best]
    ends = np.argsort(end_logits)[::-1][:n_best]
    best: tuple[float, int, int] | None = None
    for s in starts:
        if offsets[s][0] < 0:
            continue
        for e in ends:
            if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer:
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def _context_offsets(context: str, offsets, sequence_ids, whole) -> list:
    """The window's offsets with the context tokens' spans covering accents their normaliser composed in."""
    spans = iter(cover_absorbed_marks(context, [o for o, s in zip(offsets, sequence_ids) if s == 1], whole))
    return [next(spans) if s == 1 else tuple(o) for o, s in zip(offsets, sequence_ids)]


def _truncate_question(question: str, tokenizer, max_tokens: int) -> str:
    """A question cut to `max_tokens` tokens (SQuAD's max_query_length), at a character boundary."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[: enc["offset_mapping"][max_tokens - 1][1]]


def _answer_tokens(answers: dict, offsets) -> list[int]:
    """[start, end] token indices of the first gold answer in this window (context tokens: offsets >= 0), or
    [0, 0] when it is not inside."""
    if not answers["text"]:
        return [0, 0]
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    context = [i for i, o in enumerate(offsets) if o[0] >= 0]
    first, last = context[0], context[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return [0, 0]
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return [start - 1, end + 1]


# ------------------------------------------------------------------------------------------ multiple choice
class MultipleChoiceProcessor(Processor):
    """(context, choice) pairs, `task.num_labels` choices per row; the collator flattens them to
    (batch × choices) encoder rows and the head scores them back to (batch, choices)."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        require_columns(task, rows, ("context", "choices", "label"))
        k = task.num_labels

        def tokenize(batch):
            for choices, label in zip(batch["choices"], batch["label"]):
                if len(choices) != k:
                    raise AdapterxError(f"task {task.name!r}: a row has {len(choices)} choices, expected {k}")
                if not (isinstance(label, int) and 0 <= label < k):
                    raise AdapterxError(f"task {task.name!r}: label {label!r} outside 0..{k - 1}")
            first = [c for c in batch["context"] for _ in range(k)]
            second = [choice for choices in batch["choices"] for choice in choices]
            flat = tokenizer(first, second, truncation=True, max_length=max_length_for(task, tokenizer))
            return {
                key: [flat[key][i : i + k] for i in range(0, len(first), k)] for key in ("input_ids", "attention_mask")
            } | {"labels": batch["label"]}

        return rows.map(tokenize, batched=True, remove_columns=rows.column_names, desc=f"encode {task.name}")

    def collator(self, tokenizer):
        pad = PadCollator(tokenizer)

        def collate(features: list[dict]) -> dict[str, torch.Tensor]:
            flat = [
                {"input_ids": ids, "attention_mask": mask}
                for f in features
                for ids, mask in zip(f["input_ids"], f["attention_mask"])
            ]
            batch = pad(flat)
            if "labels" in features[0]:
                batch["labels"] = torch.tensor([f["labels"] for f in features])
            return batch

        return collate


# ------------------------------------------------------------------------------------------ lookup
def processor_for(task: Task) -> Processor:
    """The processor of the task's head kind: registered with the head (adapterx.core.heads.register_head)."""
    return HEADS.get(task.head).processor


def evaluate_on_split(
    model, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int = 32, **options
) -> dict[str, float]:
    """Score `model` (an AdaptedModel; for retrieval tasks anything with `.encode` or a plain encoder) on raw,
    normalised `rows` of `task` with the task's metric, for any head kind. Options go to the processor, e.g.
    ``dev_rows=`` (BUCC: the dev split that picks the threshold) or ``layer=`` (retrieval)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return processor_for(task).evaluate(model, task, rows, tokenizer, batch_size=batch_size, **options)
    finally:
        model.train(was_training)


def evaluate_language(
    model,
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    language: str,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    **options,
) -> dict[str, float]:
    """Load `split` in `language` and score it; for a task whose metric needs a dev-set threshold (BUCC) the
    validation split of the same language is loaded to choose it."""
    rows = load_split(task, split, language, data_dir, limit=limit)
    if task.metric == "bucc_f1" and split != "validation" and "dev_rows" not in options:
        options["dev_rows"] = load_split(task, "validation", language, data_dir, limit=limit)
    return evaluate_on_split(model, task, rows, tokenizer, batch_size=batch_size, **options)


__all__ = [
    "MODEL_INPUTS",
    "ClassificationProcessor",
    "MultipleChoiceProcessor",
    "PadCollator",
    "Processor",
    "RetrievalProcessor",
    "SpanQAProcessor",
    "TaggingProcessor",
    "best_span",
    "evaluate_language",
    "evaluate_on_split",
    "mine_pairs",
    "nearest",
    "processor_for",
    "qa_settings",
    "qa_windows",
]
