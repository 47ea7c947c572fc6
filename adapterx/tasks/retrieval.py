"""Sentence retrieval without training (BUCC, Tatoeba), as XTREME's ``evaluate_retrieval.py`` and
``utils_retrieve.py`` do it.

Each sentence is the mean of one layer's hidden states over its tokens; sentences are compared by cosine or by
ratio margin (Artetxe & Schwenk 2019, k=4 neighbours).

- Tatoeba: the English side is the query, the other language's side the index (XTREME's ``similarity_search``
  indexes the source sentences and searches them with the English ones): the score is the share of English
  sentences whose nearest sentence is their translation.
- BUCC: LASER's ``mine_bitext`` with retrieval "max" among all sentences of both sides (identical sentences
  embedded once; only pairs scoring above 0 are kept), candidate sentences mapped back to their ids with
  sentences that occur under several ids dropped (``read_sent2id``), then F1 above a threshold that
  ``bucc_optimize`` chooses on the dev split.

Rows: source_id, source_sentence, target_id, target_sentence. A gold pair shares a row; an unpaired sentence
leaves the other side empty; an id that is in several gold pairs carries its sentence on its first row only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import datasets
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from adapterx.core.errors import AdapterxError, unknown
from adapterx.core.heads import mean_pool
from adapterx.tasks.base import Task
from adapterx.tasks.metrics import bucc_f1, get_metric
from adapterx.tasks.processor import PadCollator, Processor, max_length_for, require_columns

SCORINGS = ("cosine", "margin")
Pair = tuple[str, str]


class RetrievalProcessor(Processor):
    """Embed both sides (see the module docstring), then score: Tatoeba by top-1 accuracy of the English side's
    queries, BUCC by mining F1 above a threshold chosen on the dev split (pass `dev_rows`; without them it is
    chosen on the rows themselves).

    Task options: layer (hidden_states index; default the paper's depth, 14 of 24 layers), scoring
    ("cosine" | "margin"), neighbours (4)."""

    def encode(self, task: Task, rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
        require_columns(task, rows, ("source_sentence", "target_sentence"))
        texts, side, row = [], [], []
        for i, (s, t) in enumerate(zip(rows["source_sentence"], rows["target_sentence"])):
            for k, text in enumerate((s, t)):
                if text and text.strip():
                    texts.append(text.strip())
                    side.append(k)
                    row.append(i)
        enc = tokenizer(texts, truncation=True, max_length=max_length_for(task, tokenizer))
        return datasets.Dataset.from_dict(
            {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "side": side, "row": row}
        )

    def collator(self, tokenizer):
        return PadCollator(tokenizer)

    def predict(self, logits: torch.Tensor, batch: dict[str, Any]) -> list:
        return list(logits.float().cpu())

    def evaluate(
        self, model, task, rows, tokenizer, batch_size: int = 32, *, dev_rows=None, layer=None, **options
    ) -> dict[str, float]:
        threshold = None
        if dev_rows is not None and task.metric == "bucc_f1":
            dev = self.encode(task, dev_rows, tokenizer)
            threshold = self.score(task, self.embed(model, task, dev, tokenizer, batch_size, layer), dev, dev_rows)[
                "threshold"
            ]
        encoded = self.encode(task, rows, tokenizer)
        return self.score(
            task, self.embed(model, task, encoded, tokenizer, batch_size, layer), encoded, rows, threshold=threshold
        )

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
            raise AdapterxError(
                f"task {task.name!r}: layer {chosen} does not exist; the encoder has "
                f"{num_layers} layers (hidden_states 0..{num_layers})"
            )
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
            source = [(rows["source_id"][r], rows["source_sentence"][r].strip()) for r in src_rows]
            target = [(rows["target_id"][r], rows["target_sentence"][r].strip()) for r in trg_rows]
            gold = {(s, t) for s, t in zip(rows["source_id"], rows["target_id"]) if s and t}
            return bucc_f1(bucc_candidates(source, x, target, y, scoring, k), gold, threshold)
        # Tatoeba: each English sentence (target side) queries the other side; row i's English sentence
        # should find row i's source sentence
        best = nearest(y, x, scoring, k)
        predicted = [src_rows[i] for i in best]
        return get_metric(task.metric)(predicted, list(trg_rows))


def _distinct(sentences: list[tuple[str, str]]) -> tuple[list[int], list[str], dict[str, str]]:
    """Positions of the first occurrence of each distinct text, those texts, and text → id for the texts that
    occur under one id only (XTREME's text_load_unify and read_sent2id)."""
    first: dict[str, int] = {}
    ids: dict[str, set[str]] = defaultdict(set)
    for position, (sentence_id, text) in enumerate(sentences):
        first.setdefault(text, position)
        ids[text].add(sentence_id)
    texts = list(first)
    return [first[t] for t in texts], texts, {t: next(iter(i)) for t, i in ids.items() if len(i) == 1}


def bucc_candidates(
    source: list[tuple[str, str]],
    x: torch.Tensor,
    target: list[tuple[str, str]],
    y: torch.Tensor,
    scoring: str = "margin",
    k: int = 4,
) -> dict[Pair, float]:
    """Mined (source id, target id) pairs with their scores, as XTREME's BUCC pipeline produces its candidates:
    mining among distinct sentences, pairs scoring > 0 only, ids through sentences that have a single id."""
    x_keep, x_texts, x_id = _distinct(source)
    y_keep, y_texts, y_id = _distinct(target)
    candidates: dict[Pair, float] = {}
    for (i, j), score in mine_pairs(x[x_keep], y[y_keep], scoring, k).items():
        a, b = x_id.get(x_texts[i]), y_id.get(y_texts[j])
        if score > 0 and a is not None and b is not None:
            candidates[(a, b)] = max(score, candidates.get((a, b), score))
    return candidates


def _topk_chunked(x: torch.Tensor, y: torch.Tensor, k: int, chunk: int = 1024):
    """Top-k cosine neighbours in y of every row of x (unit vectors), in chunks to bound memory."""
    k = min(k, y.shape[0])
    values, indices = [], []
    for start in range(0, x.shape[0], chunk):
        v, i = (x[start : start + chunk] @ y.T).topk(k, dim=1)
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
        sims = x[start : start + chunk] @ y.T
        if scoring == "margin":
            sims = sims / ((x_mean[start : start + chunk].unsqueeze(1) + y_mean.unsqueeze(0)) / 2)
        candidates = torch.arange(y.shape[0]).expand(sims.shape[0], -1) if ind is None else ind[start : start + chunk]
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


def mine_pairs(x: torch.Tensor, y: torch.Tensor, scoring: str = "margin", k: int = 4) -> dict[tuple[int, int], float]:
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
