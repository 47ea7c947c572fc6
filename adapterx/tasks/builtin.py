"""Built-in offline tasks, generated from the tiny world (adapterx.tasks.tinytasks) and shipped as JSON-lines
files in the formats of their public models (MNLI/XNLI: premise, hypothesis, label; PAWS-X: sentence1,
sentence2, label; SST-2: sentence, label). The tasks themselves are declared in task files
(``adapterx/tasks/tiny-*.yaml``, shared parts in ``_tiny.yaml``); this module writes their data.

  tiny-xnli        target task with XNLI's label space: 120 English training pairs, evaluation in en/de/es/fr/tr
                   (one set of items rendered in every language)
  tiny-nli         English intermediate NLI over two-clause premises (same labels as the target, other templates)
  tiny-paraphrase  English intermediate paraphrase identification (PAWS-like: role swaps, passives)
  tiny-negation    English intermediate negation detection
  tiny-sst         English intermediate sentiment (SST-2-like)

No target evaluation sentence occurs in any training set (see adapterx.tasks.tinytasks).
Regenerate the files with ``python -m adapterx.tasks.builtin`` (deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path

from adapterx.core import tinyworld
from adapterx.core.io import atomic_write_text
from adapterx.tasks import tinytasks as tt

BUILTIN_DATA = Path(__file__).resolve().parent.parent / "data" / "builtin"

TARGET_SIZES = {"train": 120, "validation": 150, "test": 300}
# intermediate task -> (generator, label count, {split: rows}); English only
INTERMEDIATE_SIZES = {
    "tiny-nli": (tt.nli_example, 3, {"train": 2000, "validation": 200, "test": 200}),
    "tiny-paraphrase": (tt.paraphrase_example, 2, {"train": 2000, "validation": 200, "test": 200}),
    "tiny-negation": (tt.negation_example, 2, {"train": 2000, "validation": 200, "test": 200}),
    "tiny-sst": (tt.sentiment_example, 2, {"train": 2000, "validation": 200, "test": 200}),
}
_SEED = {"tiny-xnli": 3000, "tiny-nli": 1000, "tiny-sst": 2000, "tiny-paraphrase": 4000, "tiny-negation": 5000}
_SPLIT_OFFSET = {"train": 0, "validation": 100, "test": 200}


def _write_rows(root: Path, task: str, split: str, language: str, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(root / task / f"{split}.{language}.jsonl", text)


def write_builtin_data(root: Path = BUILTIN_DATA) -> dict[str, int]:
    """Write every built-in task's files; returns how many generated examples each task dropped because they
    contained a target evaluation sentence."""
    seed = _SEED["tiny-xnli"]
    test = tt.balanced(tt.xnli_item, TARGET_SIZES["test"], 3, seed + _SPLIT_OFFSET["test"])
    test_premises = {tinyworld.render(p, "en") for p, _, _ in test}
    validation = tt.balanced(
        tt.xnli_item,
        TARGET_SIZES["validation"],
        3,
        seed + _SPLIT_OFFSET["validation"],
        keep=lambda item: tinyworld.render(item[0], "en") not in test_premises,
    )
    held_out = {s for item in test + validation for s in tt.render_xnli(item, "en").values() if isinstance(s, str)}
    train = tt.balanced(
        tt.xnli_item,
        TARGET_SIZES["train"],
        3,
        seed,
        keep=lambda item: not held_out & set(tt.texts(tt.render_xnli(item, "en"))),
    )
    for language in tinyworld.LANGUAGES:
        for split, items in (("validation", validation), ("test", test)):
            _write_rows(root, "tiny-xnli", split, language, [tt.render_xnli(i, language) for i in items])
    _write_rows(root, "tiny-xnli", "train", "en", [tt.render_xnli(i, "en") for i in train])

    lengths = {len(s.split()) for s in held_out}
    dropped = {}
    for task, (make, n_labels, sizes) in INTERMEDIATE_SIZES.items():
        dropped[task] = 0

        def keep(row: dict) -> bool:
            clean = not any(tt.contains_any(text, held_out, lengths) for text in tt.texts(row))
            dropped[task] += not clean  # noqa: B023 - called within this iteration only
            return clean

        for split, n in sizes.items():
            rows = tt.balanced(make, n, n_labels, _SEED[task] + _SPLIT_OFFSET[split], keep=keep)
            _write_rows(root, task, split, "en", rows)
    return dropped


if __name__ == "__main__":
    dropped = write_builtin_data()
    print(
        f"wrote {BUILTIN_DATA}; intermediate examples dropped for containing a target evaluation sentence: "
        + ", ".join(f"{task} {n}" for task, n in dropped.items())
    )
