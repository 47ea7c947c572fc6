"""From a prepared row's model outputs to its answer: one decoder per row kind, with evaluation's semantics
(argmax label; a word's tag on its first sub-word; the best span over windows by start + end logit, SQuAD's
n-best rule, as `adapterx.tasks.processing.best_span`; the mean of a layer's states over the real tokens).
Logits are returned as computed (float32 unless the model runs in another dtype), so that a client can check
them against `adapterx evaluate`."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from adapterx.serve.rows import Work
from adapterx.tasks.processing import best_span


def _label(work: Work, logits: torch.Tensor) -> dict:
    logits = logits.float()
    probabilities = torch.softmax(logits, -1).tolist()
    labels = work.program.top.labels  # type: ignore[union-attr]
    best = int(torch.argmax(logits))
    return {
        "label": labels[best],
        "label_id": best,
        "probabilities": dict(zip(labels, probabilities)),
        "logits": logits.tolist(),
    }


def _tags(work: Work, parts: list[torch.Tensor]) -> dict:
    labels = work.program.top.labels  # type: ignore[union-attr]
    words, spans = work.extra["words"], work.extra["spans"]
    found: dict[int, torch.Tensor] = {}
    for logits, word_index in zip(parts, work.extra["word_index"]):
        found.update((w, logits[i].float()) for i, w in enumerate(word_index) if w >= 0)
    tags = []
    for w, (word, (start, end)) in enumerate(zip(words, spans)):
        scores = found[w]
        best = int(torch.argmax(scores))
        tags.append(
            {
                "word": word,
                "start": start,
                "end": end,
                "tag": labels[best],
                "score": float(torch.softmax(scores, -1)[best]),
                "logits": scores.tolist(),
            }
        )
    return {"tags": tags}


def _span(work: Work, windows: list[torch.Tensor]) -> dict:
    best: tuple[float, int, int] | None = None
    for logits, offsets in zip(windows, work.extra["offsets"]):
        found = best_span(logits.float().cpu().numpy(), offsets, work.extra["n_best"], work.extra["max_answer"])
        if found is not None and (best is None or found[0] > best[0]):
            best = found
    context = work.extra["context"]
    out = {"answer": "", "start": None, "end": None, "score": None}
    if best is not None:
        score, start, end = best
        text = context[start:end]
        start, end = start + len(text) - len(text.lstrip()), end - (len(text) - len(text.rstrip()))
        out = {"answer": context[start:end], "start": start, "end": end, "score": score}
    return {**out, "logits": [w.float().tolist() for w in windows]}


def _embedding(work: Work, pooled: torch.Tensor) -> dict:
    vector = pooled.float()
    if work.row.normalize:
        vector = F.normalize(vector, dim=-1)
    return {"embedding": vector.tolist()}


DECODERS = {"predict": _label, "tag": _tags, "answer": _span, "embed": _embedding}


def decode(work: Work, outputs) -> dict:
    """The answer to `work`: {"adapter": its program's name, "tokens": its token count, ...its kind's fields}.
    `outputs`: the logits of each of its sequences (a list), or its pooled vector (embed)."""
    kind = work.row.kind
    answer = DECODERS[kind](work, outputs[0] if kind == "predict" else outputs)
    return {"adapter": work.program.name or None, "tokens": sum(len(s) for s in work.sequences), **answer}
