"""The runs of one report row (one label and deployment form, several seeds), paired comparisons between
rows, confusion matrices, and the check of a recipe's expectations.

Two rows are compared seed by seed (the seeds both have; a row without seeds, such as the bare backbone,
pairs with every seed) and, where per-example predictions were kept, example by example, with the crossed
bootstrap of adapterx.study.intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapterx.study.intervals import crossed_bootstrap, seed_bootstrap, spread
from adapterx.study.predictions import (
    collapse,
    confusion,
    correctness,
    load_predictions,
)


@dataclass
class RunSet:
    """The evaluated runs of one row: scores per seed, and per-example data where it was kept."""

    label: str
    form: str
    info: dict  # role, control, intermediate, strategy, step_phases
    seeds: list  # in order; [None] for a row without seeds
    scores: list[dict]  # per seed: {language: {metric: value}}
    predictions: list[dict | None] = field(default_factory=list)  # per seed: {language: {predicted, gold}}

    @property
    def per_example(self) -> bool:
        return bool(self.predictions) and all(p for p in self.predictions)


def runsets(records: list[dict], out_dir: Path) -> dict[tuple[str, str], RunSet]:
    """Group evaluation records by (label, form), seeds in ascending order, predictions loaded."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["label"], r["form"]), []).append(r)
    out = {}
    for (label, form), rows in groups.items():
        rows = sorted(rows, key=lambda r: (r["seed"] is not None, r["seed"] or 0))
        first = rows[0]
        info = {k: first.get(k) for k in ("role", "control", "intermediate", "strategy", "step_phases")}
        predictions = [
            load_predictions(Path(out_dir) / r["predictions"]) if r.get("predictions") else None for r in rows
        ]
        out[(label, form)] = RunSet(
            label, form, info, [r["seed"] for r in rows], [r["scores"] for r in rows], predictions
        )
    return out


def _paired(a: RunSet, b: RunSet) -> tuple[list[int], list[int]]:
    """Indices into a's and b's runs that pair by seed."""
    if b.seeds == [None]:
        return list(range(len(a.seeds))), [0] * len(a.seeds)
    if a.seeds == [None]:
        return [0] * len(b.seeds), list(range(len(b.seeds)))
    common = [s for s in a.seeds if s in b.seeds]
    return [a.seeds.index(s) for s in common], [b.seeds.index(s) for s in common]


def _examples(run: RunSet, which: list[int], languages: list[str]) -> dict[str, np.ndarray]:
    return {lang: np.stack([correctness(run.predictions[i][lang]) for i in which]) for lang in languages}


def _per_seed(run: RunSet, which: list[int], languages: list[str], metric: str) -> dict[str, list[float]]:
    return {lang: [run.scores[i][lang][metric] for i in which] for lang in languages}


def difference(
    a: RunSet, b: RunSet | None, languages: list[str], metric: str, resamples: int, confidence: float
) -> dict | None:
    """a minus b (or a's own mean when b is None), per language and averaged, paired by seed and example;
    None if the two rows share no seed."""
    if b is None:
        ia, ib = list(range(len(a.seeds))), []
    else:
        ia, ib = _paired(a, b)
        if not ia:
            return None
    if a.per_example and (b is None or b.per_example):
        return crossed_bootstrap(
            _examples(a, ia, languages),
            _examples(b, ib, languages) if b else None,
            resamples=resamples,
            confidence=confidence,
        )
    return seed_bootstrap(
        _per_seed(a, ia, languages, metric),
        _per_seed(b, ib, languages, metric) if b else None,
        resamples=resamples,
        confidence=confidence,
    )


def describe(run: RunSet, languages: list[str], metric: str, resamples: int, confidence: float) -> dict:
    """Per-language and average mean ± std over seeds, each with the interval of the mean."""
    own = difference(run, None, languages, metric, resamples, confidence)
    averages = [float(np.mean([s[lang][metric] for lang in languages])) for s in run.scores]
    per_language = {
        lang: {
            **spread([s[lang][metric] for s in run.scores]),
            "ci": own["per_language"][lang]["ci"],
            "n_examples": own["per_language"][lang]["n_examples"],
        }
        for lang in languages
    }
    return {
        "per_language": per_language,
        "average": {**spread(averages), "ci": own["average"]["ci"], "method": own["average"]["method"]},
    }


def confusions(run: RunSet, languages: list[str], labels: list[str]) -> tuple[dict, dict]:
    """({language: [gold][predicted] counts summed over seeds}, {language: collapse note}) -- a seed whose
    predictions collapsed to one class is named, with the class and its share."""
    if not run.per_example:
        return {}, {}
    matrices, collapsed = {}, {}
    for lang in languages:
        per_seed = [confusion(p[lang], len(labels)) for p in run.predictions]
        matrices[lang] = np.sum(per_seed, axis=0).tolist()
        found = [(seed, c) for seed, m in zip(run.seeds, per_seed) if (c := collapse(m))]
        if found:
            collapsed[lang] = {
                "seeds": [seed for seed, _ in found],
                "label": labels[found[0][1][0]],
                "share": round(max(c[1] for _, c in found), 3),
            }
    return matrices, collapsed


def verdict(diff: dict | None, direction: str) -> str:
    """held | contradicted | inconclusive | no interval | not run, for an expected direction '>' or '<'."""
    if diff is None:
        return "not run"
    if not diff["interval"]:
        return "no interval"
    lo, hi = diff["ci"]
    above, below = lo > 0, hi < 0
    if (above and direction == ">") or (below and direction == "<"):
        return "held"
    if above or below:
        return "contradicted"
    return "inconclusive"
