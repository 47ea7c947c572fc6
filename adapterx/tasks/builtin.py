"""Built-in offline tasks, generated from `adapterx.core.tinyworld` and shipped as JSON-lines files in the
formats of their public models (MNLI/XNLI: premise, hypothesis, label; SST-2: sentence, label).

  tiny-nli   English intermediate task, MNLI-like, 3000 training pairs
  tiny-sst   English intermediate task, SST-2-like (a task that should *not* help NLI much)
  tiny-xnli  target task with XNLI's label space: a small English training set, evaluation in en/de/es/fr

Regenerate the files with ``python -m adapterx.tasks.builtin`` (deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

from adapterx.core import tinyworld
from adapterx.tasks import register_task
from adapterx.tasks.base import DataRequest, Task
from adapterx.tasks.files import find_file, load_jsonl

BUILTIN_DATA = Path(__file__).resolve().parent.parent / "data" / "builtin"

# (task, generator, label count, {split: {language: rows}})
_SIZES = {
    "tiny-nli": (tinyworld.nli_example, 3, {"train": {"en": 3000}, "validation": {"en": 300}, "test": {"en": 300}}),
    "tiny-sst": (tinyworld.sentiment_example, 2,
                 {"train": {"en": 2000}, "validation": {"en": 200}, "test": {"en": 200}}),
    "tiny-xnli": (tinyworld.nli_example, 3, {
        "train": {"en": 96},
        "validation": {lang: 150 for lang in tinyworld.LANGUAGES},
        "test": {lang: 300 for lang in tinyworld.LANGUAGES},
    }),
}
_SEED_OFFSET = {"tiny-nli": 1000, "tiny-sst": 2000, "tiny-xnli": 3000}
_SPLIT_OFFSET = {"train": 0, "validation": 100, "test": 200}


def write_builtin_data(root: Path = BUILTIN_DATA) -> None:
    for task, (make, n_labels, splits) in _SIZES.items():
        for split, per_language in splits.items():
            for language, n in per_language.items():
                seed = _SEED_OFFSET[task] + _SPLIT_OFFSET[split]
                rows = tinyworld.balanced_examples(make, n, n_labels, language, seed)
                path = root / task / f"{split}.{language}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# The built-in backbone is not pretrained: its <s> state carries little of the input, so the built-in
# classification tasks pool the mean of all tokens (see ClassificationHead).
_MEAN_POOLING = {"head": {"pooling": "mean"}}


def _load_builtin(request: DataRequest):
    # a --data-dir for other tasks does not hide the built-in files unless it holds this task's own copy
    local = request.data_dir is not None and (request.data_dir / request.task.name).is_dir()
    root = request.data_dir if local else BUILTIN_DATA
    return load_jsonl(find_file(root, request.task.name, request.split, request.language, ("jsonl",)))


register_task(Task(
    name="tiny-nli", role="intermediate", head="classification", metric="accuracy", loader=_load_builtin,
    labels=tinyworld.NLI_LABELS, text_fields=("premise", "hypothesis"), max_length=48, options=_MEAN_POOLING,
    description="built-in English NLI (MNLI-like), synthetic",
))
register_task(Task(
    name="tiny-sst", role="intermediate", head="classification", metric="accuracy", loader=_load_builtin,
    labels=tinyworld.SENTIMENT_LABELS, text_fields=("sentence",), max_length=32, options=_MEAN_POOLING,
    description="built-in English sentiment (SST-2-like), synthetic",
))
register_task(Task(
    name="tiny-xnli", role="target", head="classification", metric="accuracy", loader=_load_builtin,
    labels=tinyworld.NLI_LABELS, text_fields=("premise", "hypothesis"), max_length=48,
    languages=tinyworld.LANGUAGES, options=_MEAN_POOLING,
    description="built-in cross-lingual NLI with XNLI's labels: English training, en/de/es/fr evaluation",
))

if __name__ == "__main__":
    write_builtin_data()
    print(f"wrote {BUILTIN_DATA}")
