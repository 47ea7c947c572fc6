"""From raw rows to model inputs and back to scores, one `Processor` per head kind.

A processor knows how to encode a split for its head kind (tokenise, align labels), collate a batch, turn
logits into predictions and score them with the task's metric. Tasks only name their head kind.

Rows reach a processor already normalised by the task's loader (see `adapterx.tasks.sources`):

  classification   the task's `text_fields` and an integer `label_field`
  tagging          tokens: list[str], tags: list[int]  (indices into `task.labels`)
  span_qa          id, context, question, answers{text: [...], answer_start: [...]}, language
  multiple_choice  context: str, choices: list[str] (one second segment per choice), label: int
  retrieval        source_id, source_sentence, target_id, target_sentence (a gold pair shares a row; an
                   unpaired sentence leaves the other side empty)

The one entry point for evaluation is `evaluate_on_split(model, task, rows, tokenizer)`: it runs
encode → batches → model → predict → score for every head kind (retrieval included, whose model is the
encoder's hidden states). Training uses `encode` and `collator`: every collated batch holds only
``input_ids``, ``attention_mask`` and ``labels``, so ``model(**batch).loss`` works for every trainable kind.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from adapterx.core.errors import AdapterxError, unknown
from adapterx.core.heads import mean_pool
from adapterx.tasks.base import Task
from adapterx.tasks.data import load_split
from adapterx.tasks.metrics import bucc_f1, get_metric

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

    def evaluate(self, model, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                 batch_size: int = 32, **options) -> dict[str, float]:
        """encode → batches → model(**batch).logits → predict → score. Call under inference mode, model.eval()."""
        encoded = self.encode(task, rows, tokenizer)
        loader = DataLoader(encoded, batch_size=batch_size, collate_fn=self.collator(tokenizer))
        predictions: list = []
        for batch in loader:
            batch = {k: v.to(model.device) for k, v in batch.items()}
            batch.pop("labels", None)
            predictions.extend(self.predict(model(**batch).logits, batch))
        return self.score(task, predictions, encoded, rows)


def _max_length(task: Task, tokenizer: PreTrainedTokenizerBase) -> int:
    return min(task.max_length, tokenizer.model_max_length)


def _require(task: Task, rows: datasets.Dataset, fields) -> None:
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
            batch["labels"] = (pad("labels", -100) if self.token_labels
                               else torch.tensor([f["labels"] for f in features]))
        return batch


# ------------------------------------------------------------------------------------------ classification
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


# ------------------------------------------------------------------------------------------ tagging
class TaggingProcessor(Processor):
    """Word-level tags on each word's first sub-word (-100 on the other sub-words and special tokens).
    Scoring maps predictions back to words; a word lost to truncation gets "O" (NER) or counts as wrong."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        _require(task, rows, ("tokens", "tags"))
        n = task.num_labels

        def tokenize(batch):
            out = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True,
                            max_length=_max_length(task, tokenizer))
            out["labels"], out["word_index"] = [], []
            for i, tags in enumerate(batch["tags"]):
                if len(tags) != len(batch["tokens"][i]):
                    raise AdapterxError(f"task {task.name!r}: a sentence has {len(batch['tokens'][i])} words "
                                        f"and {len(tags)} tags")
                labels, words, previous = [], [], None
                for w in out.word_ids(i):
                    first = w is not None and w != previous
                    if first and not 0 <= tags[w] < n:
                        raise AdapterxError(f"task {task.name!r}: tag {tags[w]} outside 0..{n - 1}")
                    labels.append(tags[w] if first else -100)
                    words.append(w if first else -1)
                    previous = w if w is not None else previous
                out["labels"].append(labels)
                out["word_index"].append(words)
            return out

        return rows.map(tokenize, batched=True, remove_columns=rows.column_names, desc=f"encode {task.name}")

    def collator(self, tokenizer):
        return PadCollator(tokenizer, token_labels=True)

    def score(self, task, predictions, encoded, rows) -> dict:
        fallback = task.labels.index("O") if "O" in task.labels else -1
        predicted, gold = [], []
        for preds, words, tags in zip(predictions, encoded["word_index"], rows["tags"]):
            by_word = {w: p for w, p in zip(words, preds) if w >= 0}
            ids = [by_word.get(w, fallback) for w in range(len(tags))]
            predicted.append([task.labels[i] if i >= 0 else "<truncated>" for i in ids])
            gold.append([task.labels[t] for t in tags])
        return get_metric(task.metric)(predicted, gold)


# ------------------------------------------------------------------------------------------ span QA
class SpanQAProcessor(Processor):
    """SQuAD-style extractive QA. Long contexts are cut into windows of `max_length` tokens overlapping by
    `doc_stride` tokens (capped at a third of the window); training labels are the answer's start/end token
    (0, the <s> token, when a window lacks the answer). Predictions are the best valid span over all windows
    of a question (start + end logit, n-best 20, at most `max_answer_length` tokens), as text.

    Task options: doc_stride (128), max_query_length (64 tokens), max_answer_length (30), n_best (20)."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        _require(task, rows, ("context", "question", "answers"))
        max_length = _max_length(task, tokenizer)
        stride = min(task.options.get("doc_stride", 128), max_length // 3)
        max_query = task.options.get("max_query_length", 64)

        def tokenize(batch, indices):
            questions = [_truncate_question(q.strip(), tokenizer, max_query) for q in batch["question"]]
            out = tokenizer(questions, batch["context"], truncation="only_second", max_length=max_length,
                            stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
            sample_map = out.pop("overflow_to_sample_mapping")
            out["labels"], out["example_index"], offsets_out = [], [], []
            for i, offsets in enumerate(out["offset_mapping"]):
                sequence_ids = out.sequence_ids(i)
                example = sample_map[i]
                out["example_index"].append(indices[example])
                offsets_out.append([list(o) if s == 1 else [-1, -1] for o, s in zip(offsets, sequence_ids)])
                out["labels"].append(_answer_tokens(batch["answers"][example], offsets, sequence_ids))
            out["offset_mapping"] = offsets_out
            return out

        return rows.map(tokenize, batched=True, with_indices=True, remove_columns=rows.column_names,
                        desc=f"encode {task.name}")

    def collator(self, tokenizer):
        return PadCollator(tokenizer)

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return list(logits.float().cpu().numpy())

    def postprocess(self, task: Task, predictions: list, encoded: datasets.Dataset, rows: datasets.Dataset
                    ) -> list[str]:
        """The answer text of each row: the best span over its windows."""
        n_best = task.options.get("n_best", 20)
        max_answer = task.options.get("max_answer_length", 30)
        best: dict[int, tuple[float, str]] = {}
        contexts = rows["context"]
        for logits, offsets, example in zip(predictions, encoded["offset_mapping"], encoded["example_index"]):
            length = len(offsets)
            start_logits, end_logits = logits[:length, 0], logits[:length, 1]
            starts = np.argsort(start_logits)[::-1][:n_best]
            ends = np.argsort(end_logits)[::-1][:n_best]
            for s in starts:
                if offsets[s][0] < 0:
                    continue
                for e in ends:
                    if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer:
                        continue
                    score = float(start_logits[s] + end_logits[e])
                    if example not in best or score > best[example][0]:
                        best[example] = (score, contexts[example][offsets[s][0]:offsets[e][1]].strip())
        return [best.get(i, (0.0, ""))[1] for i in range(len(rows))]

    def score(self, task, predictions, encoded, rows) -> dict:
        answers = self.postprocess(task, predictions, encoded, rows)
        language = rows["language"][0] if "language" in rows.column_names and len(rows) else "en"
        return get_metric(task.metric)(answers, [a["text"] for a in rows["answers"]], language=language)


def _truncate_question(question: str, tokenizer, max_tokens: int) -> str:
    """A question cut to `max_tokens` tokens (SQuAD's max_query_length), at a character boundary."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[:enc["offset_mapping"][max_tokens - 1][1]]


def _answer_tokens(answers: dict, offsets, sequence_ids) -> list[int]:
    """[start, end] token indices of the first gold answer in this window, or [0, 0] when it is not inside."""
    if not answers["text"]:
        return [0, 0]
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    first = sequence_ids.index(1)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(1)
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
        _require(task, rows, ("context", "choices", "label"))
        k = task.num_labels

        def tokenize(batch):
            for choices, label in zip(batch["choices"], batch["label"]):
                if len(choices) != k:
                    raise AdapterxError(f"task {task.name!r}: a row has {len(choices)} choices, expected {k}")
                if not (isinstance(label, int) and 0 <= label < k):
                    raise AdapterxError(f"task {task.name!r}: label {label!r} outside 0..{k - 1}")
            first = [c for c in batch["context"] for _ in range(k)]
            second = [choice for choices in batch["choices"] for choice in choices]
            flat = tokenizer(first, second, truncation=True, max_length=_max_length(task, tokenizer))
            return {key: [flat[key][i:i + k] for i in range(0, len(first), k)]
                    for key in ("input_ids", "attention_mask")} | {"labels": batch["label"]}

        return rows.map(tokenize, batched=True, remove_columns=rows.column_names, desc=f"encode {task.name}")

    def collator(self, tokenizer):
        pad = PadCollator(tokenizer)

        def collate(features: list[dict]) -> dict[str, torch.Tensor]:
            flat = [{"input_ids": ids, "attention_mask": mask} for f in features
                    for ids, mask in zip(f["input_ids"], f["attention_mask"])]
            batch = pad(flat)
            if "labels" in features[0]:
                batch["labels"] = torch.tensor([f["labels"] for f in features])
            return batch

        return collate


# ------------------------------------------------------------------------------------------ retrieval
class RetrievalProcessor(Processor):
    """Sentence retrieval without training (BUCC, Tatoeba), as XTREME does it: each sentence is the mean of a
    chosen layer's hidden states over its tokens; sentences are compared by cosine or by ratio margin
    (Artetxe & Schwenk 2019, k=4 neighbours). Tatoeba: the nearest English sentence of each source sentence,
    scored by accuracy. BUCC: bidirectional ("max") mining of candidate pairs, F1 above a threshold chosen on
    the dev split (pass `dev_rows`; without them it is chosen on the rows themselves).

    Task options: layer (hidden_states index; default the paper's depth, 14 of 24 layers), scoring
    ("cosine" | "margin"), neighbours (4)."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        _require(task, rows, ("source_sentence", "target_sentence"))
        texts, side, row = [], [], []
        for i, (s, t) in enumerate(zip(rows["source_sentence"], rows["target_sentence"])):
            for k, text in enumerate((s, t)):
                if text and text.strip():
                    texts.append(text.strip())
                    side.append(k)
                    row.append(i)
        enc = tokenizer(texts, truncation=True, max_length=_max_length(task, tokenizer))
        return datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                           "side": side, "row": row})

    def collator(self, tokenizer):
        return PadCollator(tokenizer)

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return list(logits.float().cpu())

    def evaluate(self, model, task, rows, tokenizer, batch_size: int = 32, *, dev_rows=None, layer=None,
                 **options) -> dict[str, float]:
        threshold = None
        if dev_rows is not None and task.metric == "bucc_f1":
            dev = self.encode(task, dev_rows, tokenizer)
            threshold = self.score(task, self.embed(model, task, dev, tokenizer, batch_size, layer), dev,
                                   dev_rows)["threshold"]
        encoded = self.encode(task, rows, tokenizer)
        return self.score(task, self.embed(model, task, encoded, tokenizer, batch_size, layer), encoded, rows,
                          threshold=threshold)

    def embed(self, model, task, encoded, tokenizer, batch_size: int, layer: int | None) -> list[torch.Tensor]:
        loader = DataLoader(encoded, batch_size=batch_size, collate_fn=self.collator(tokenizer))
        encode = getattr(model, "encode", model)
        device = next(model.parameters()).device
        embeddings: list[torch.Tensor] = []
        for batch in loader:
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            hidden_states = encode(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            index = self.layer(task, len(hidden_states) - 1, layer)
            embeddings.extend(self.predict(mean_pool(hidden_states[index], mask), batch))
        return embeddings

    @staticmethod
    def layer(task: Task, num_layers: int, layer: int | None = None) -> int:
        """hidden_states index to pool: explicit, the task's option, or the paper's depth (14 of 24)."""
        chosen = layer if layer is not None else task.options.get("layer")
        if chosen is None:
            return max(1, round(num_layers * 14 / 24))
        if not -num_layers - 1 <= chosen <= num_layers:
            raise AdapterxError(f"task {task.name!r}: layer {chosen} does not exist; the encoder has "
                                f"{num_layers} layers (hidden_states 0..{num_layers})")
        return chosen

    def score(self, task, predictions, encoded, rows, threshold: float | None = None) -> dict:
        by_side: dict[int, list] = defaultdict(list)
        for emb, side, row in zip(predictions, encoded["side"], encoded["row"]):
            by_side[side].append((row, emb))
        if not by_side[0] or not by_side[1]:
            raise AdapterxError(f"task {task.name!r}: retrieval needs sentences on both sides")
        src_rows, x = zip(*by_side[0])
        trg_rows, y = zip(*by_side[1])
        x, y = F.normalize(torch.stack(x), dim=-1), F.normalize(torch.stack(y), dim=-1)
        scoring = task.options.get("scoring", "cosine")
        k = task.options.get("neighbours", 4)
        if scoring not in SCORINGS:
            raise unknown("retrieval scoring", scoring, SCORINGS)
        if task.metric == "bucc_f1":
            source_column, target_column = rows["source_id"], rows["target_id"]
            src_ids = [source_column[r] for r in src_rows]
            trg_ids = [target_column[r] for r in trg_rows]
            candidates = mine_pairs(x, y, scoring, k)
            scored = {(src_ids[i], trg_ids[j]): s for (i, j), s in candidates.items()}
            gold = {(s, t) for s, t in zip(source_column, target_column) if s and t}
            return bucc_f1(scored, gold, threshold)
        # Tatoeba-style: row i's source sentence should find row i's target sentence
        row_of_target = list(trg_rows)
        best = nearest(x, y, scoring, k)
        predicted = [row_of_target[j] for j in best]
        return get_metric(task.metric)(predicted, list(src_rows))


SCORINGS = ("cosine", "margin")


def _topk_chunked(x: torch.Tensor, y: torch.Tensor, k: int, chunk: int = 1024):
    """Top-k cosine neighbours in y of every row of x (unit vectors), in chunks to bound memory."""
    k = min(k, y.shape[0])
    values, indices = [], []
    for start in range(0, x.shape[0], chunk):
        v, i = (x[start:start + chunk] @ y.T).topk(k, dim=1)
        values.append(v)
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def _margin_inputs(x, y, k):
    x2y_sim, x2y_ind = _topk_chunked(x, y, k)
    y2x_sim, y2x_ind = _topk_chunked(y, x, k)
    return x2y_sim, x2y_ind, x2y_sim.mean(1), y2x_sim, y2x_ind, y2x_sim.mean(1)


def _best(x, y, ind, scoring, x_mean, y_mean, chunk: int = 1024):
    """For each row of x, the best y among its candidate indices `ind` (None: all of y): (index, score).
    Ratio margin: cos(x, y) / the mean of x's and y's average similarity to their k nearest neighbours."""
    best_index, best_score = [], []
    for start in range(0, x.shape[0], chunk):
        sims = x[start:start + chunk] @ y.T
        if scoring == "margin":
            sims = sims / ((x_mean[start:start + chunk].unsqueeze(1) + y_mean.unsqueeze(0)) / 2)
        candidates = torch.arange(y.shape[0]).expand(sims.shape[0], -1) if ind is None else ind[start:start + chunk]
        score, which = sims.gather(1, candidates).max(1)
        best_index.append(candidates.gather(1, which.unsqueeze(1)).squeeze(1))
        best_score.append(score)
    return torch.cat(best_index), torch.cat(best_score)


def nearest(x: torch.Tensor, y: torch.Tensor, scoring: str = "cosine", k: int = 4) -> list[int]:
    """Index of the best y for each x (unit vectors), by cosine or ratio margin over all of y."""
    if scoring == "cosine":
        return _topk_chunked(x, y, 1)[1][:, 0].tolist()
    _, _, x_mean, _, _, y_mean = _margin_inputs(x, y, k)
    return _best(x, y, None, scoring, x_mean, y_mean)[0].tolist()


def mine_pairs(x: torch.Tensor, y: torch.Tensor, scoring: str = "margin", k: int = 4
               ) -> dict[tuple[int, int], float]:
    """XTREME/LASER's bitext mining with retrieval "max": the best target of each source and the best source of
    each target (among the k nearest), merged by falling score, each sentence used once."""
    x2y_sim, x2y_ind, x_mean, y2x_sim, y2x_ind, y_mean = _margin_inputs(x, y, k)
    fwd_best, fwd_score = _best(x, y, x2y_ind, scoring, x_mean, y_mean)
    bwd_best, bwd_score = _best(y, x, y2x_ind, scoring, y_mean, x_mean)
    pairs = [(i, int(j)) for i, j in enumerate(fwd_best)] + [(int(i), j) for j, i in enumerate(bwd_best)]
    scores = torch.cat([fwd_score, bwd_score]).tolist()
    seen_x, seen_y, mined = set(), set(), {}
    for n in sorted(range(len(pairs)), key=lambda n: -scores[n]):
        i, j = pairs[n]
        if i not in seen_x and j not in seen_y:
            seen_x.add(i)
            seen_y.add(j)
            mined[(i, j)] = scores[n]
    return mined


# ------------------------------------------------------------------------------------------ registry
PROCESSORS: dict[str, Processor] = {
    "classification": ClassificationProcessor(),
    "tagging": TaggingProcessor(),
    "span_qa": SpanQAProcessor(),
    "multiple_choice": MultipleChoiceProcessor(),
    "retrieval": RetrievalProcessor(),
}


def processor_for(task: Task) -> Processor:
    if task.head not in PROCESSORS:
        raise unknown("head kind (no processor)", task.head, PROCESSORS)
    return PROCESSORS[task.head]


def evaluate_on_split(model, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                      batch_size: int = 32, **options) -> dict[str, float]:
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


def evaluate_language(model, task: Task, tokenizer: PreTrainedTokenizerBase, split: str, language: str, *,
                      data_dir: str | Path | None = None, limit: int | None = None, batch_size: int = 32,
                      **options) -> dict[str, float]:
    """Load `split` in `language` and score it; for a task whose metric needs a dev-set threshold (BUCC) the
    validation split of the same language is loaded to choose it."""
    rows = load_split(task, split, language, data_dir, limit=limit)
    if task.metric == "bucc_f1" and split != "validation" and "dev_rows" not in options:
        options["dev_rows"] = load_split(task, "validation", language, data_dir, limit=limit)
    return evaluate_on_split(model, task, rows, tokenizer, batch_size=batch_size, **options)
