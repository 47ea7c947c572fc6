"""Per-example predictions of one evaluated model, kept beside its scores: the intervals need them (per-example
scores, see adapterx.study.intervals) and so do confusion matrices, which show a collapse to one class.

A classification task's predictions and gold labels are stored per language as small integer arrays (uint8
for up to 256 labels, else int16) in ``predictions.safetensors`` beside the evaluation phase's phase.json:
tensors ``<language>.predicted`` and ``<language>.gold``. Other head kinds (tagging, QA, retrieval) keep their
scores only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from adapterx.core.io import atomic_write_bytes
from adapterx.tasks.base import Task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import evaluate_language, processor_for

PREDICTIONS_FILE = "predictions.safetensors"
COLLAPSE_SHARE = 0.9  # one predicted class this often (and far more often than it is the gold label): collapsed


def keeps_predictions(task: Task) -> bool:
    """Per-example predictions are kept (and intervals count test-set sampling) for classification tasks."""
    return task.head == "classification" and task.metric == "accuracy"


def _dtype(task: Task):
    return np.uint8 if task.num_labels <= 256 else np.int16


def predict_language(
    model,
    task: Task,
    tokenizer,
    split: str,
    language: str,
    *,
    data_dir=None,
    limit: int | None = None,
    batch_size: int = 32,
) -> tuple[dict[str, float], dict | None]:
    """Scores of `task` in one language and, for classification, the predicted and gold label ids."""
    if not keeps_predictions(task):
        return evaluate_language(
            model, task, tokenizer, split, language, data_dir=data_dir, limit=limit, batch_size=batch_size
        ), None
    processor = processor_for(task)
    rows = load_split(task, split, language, data_dir, limit=limit)
    encoded = processor.encode(task, rows, tokenizer)
    loader = DataLoader(encoded, batch_size=batch_size, collate_fn=processor.collator(tokenizer))
    predicted: list[int] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = {k: v.to(model.device) for k, v in batch.items() if k != "labels"}
                predicted.extend(processor.predict(model(**batch).logits, batch))
    finally:
        model.train(was_training)
    scores = processor.score(task, predicted, encoded, rows)
    kind = _dtype(task)
    return scores, {"predicted": np.asarray(predicted, dtype=kind), "gold": np.asarray(encoded["labels"], dtype=kind)}


def predict_languages(
    model,
    task: Task,
    tokenizer,
    *,
    split: str,
    languages: list[str],
    data_dir=None,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[dict, dict[str, dict]]:
    """`predict_language` for every language: ({language: scores}, {language: predictions})."""
    scores, predictions = {}, {}
    for language in tqdm(languages, desc=f"evaluate {task.name}", disable=not progress, leave=False):
        scores[language], kept = predict_language(
            model, task, tokenizer, split, language, data_dir=data_dir, limit=limit
        )
        if kept is not None:
            predictions[language] = kept
    return scores, predictions


def save_predictions(path: Path, predictions: dict[str, dict]) -> None:
    tensors = {
        f"{lang}.{part}": np.ascontiguousarray(array)
        for lang, parts in predictions.items()
        for part, array in parts.items()
    }
    atomic_write_bytes(path, save_numpy(tensors))


def load_predictions(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{language: {"predicted": array, "gold": array}} from a file `save_predictions` wrote."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, array in load_numpy(Path(path).read_bytes()).items():
        language, part = key.rsplit(".", 1)
        out.setdefault(language, {})[part] = array
    return out


def correctness(parts: dict[str, np.ndarray]) -> np.ndarray:
    """Per-example accuracy scores in percent (100 right, 0 wrong), the unit of the bootstrap."""
    return (parts["predicted"] == parts["gold"]).astype(np.float64) * 100.0


def confusion(parts: dict[str, np.ndarray], n_labels: int) -> list[list[int]]:
    """Counts [gold][predicted]."""
    matrix = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(matrix, (parts["gold"].astype(np.int64), parts["predicted"].astype(np.int64)), 1)
    return matrix.tolist()


def collapse(matrix: list[list[int]]) -> tuple[int, float] | None:
    """(class, share) when the predictions collapsed to one class: it takes >= COLLAPSE_SHARE of all
    predictions although it is the gold label of at most COLLAPSE_SHARE of them."""
    counts = np.asarray(matrix)
    total = counts.sum()
    if total == 0:
        return None
    predicted_share = counts.sum(axis=0) / total
    top = int(predicted_share.argmax())
    if predicted_share[top] >= COLLAPSE_SHARE and counts[top].sum() / total < COLLAPSE_SHARE:
        return top, float(predicted_share[top])
    return None
