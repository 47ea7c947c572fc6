"""Intervals for a study's figures that count both sources of chance: the training seed and the test sample.

A score of a setup is the mean over its seeds (trained models) and the test examples (each language's test
set). Every seed is evaluated on the same examples, so seeds and examples are *crossed*, not nested. The
interval is a percentile bootstrap that resamples both at once (the "pigeonhole" bootstrap of Owen 2007, Ann.
Appl. Stat. 1(1), for crossed random effects; it errs on the wide side):

  * one draw of S seed indices (with replacement) per replicate, the same for every language (a seed is one
    trained model) and, for a difference, for both sides: setup and baseline are *paired by seed* (target run s
    sits on intermediate run s, and is compared with the baseline trained with seed s);
  * one draw of N example indices per language per replicate, applied to every drawn seed and to both sides
    (the same test examples score the setup and the baseline); where all languages have the same number of
    examples, one draw serves every language, since parallel test sets (XNLI's) hold one item per index in
    every language -- and for unrelated sets of equal size the shared draw is still a valid resample.

Resampling examples independently within each seed instead (a nested bootstrap) would treat the shared test
set as if each seed had its own, and understate the test-set part of the error by a factor of S.

Per-example scores exist for metrics that are means over examples (accuracy: 100 if right, else 0). For other
metrics (F1 over spans or entities, retrieval) only seeds are resampled, and the method says so; with one seed
such an interval is a point, and is reported as no interval.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import numpy as np

TWO_WAY = "paired bootstrap over seeds x test examples (crossed; one example draw shared by all seeds)"
SEEDS_ONLY = "paired bootstrap over seeds only (no per-example scores for this metric)"

Scores = Mapping[str, np.ndarray]  # language -> (seeds, examples) per-example scores, seeds in a fixed order


def _bounds(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return [float(lo), float(hi)]


def _summary(
    point: float, replicates: np.ndarray | None, confidence: float, n_seeds: int, n_examples: int | None, method: str
) -> dict:
    ci = _bounds(replicates, confidence) if replicates is not None else [point, point]
    has_interval = replicates is not None and (n_examples is not None or n_seeds > 1)
    return {
        "mean": point,
        "ci": ci,
        "n_seeds": n_seeds,
        "n_examples": n_examples,
        "method": method,
        "interval": has_interval,
        "shown": has_interval and (ci[0] > 0 or ci[1] < 0),
    }


def crossed_bootstrap(
    setup: Scores, baseline: Scores | None = None, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict:
    """Mean per-example score of `setup` (or its difference to `baseline`, paired by seed and example) per
    language and averaged over languages (unweighted, XTREME-style), each with its interval.

    `setup[lang]` and `baseline[lang]` are arrays of shape (seeds, examples); row s of both is seed s."""
    languages = list(setup)
    diffs = {}
    for lang in languages:
        a = np.asarray(setup[lang], dtype=np.float64)
        if baseline is not None:
            b = np.asarray(baseline[lang], dtype=np.float64)
            if a.shape != b.shape:
                raise ValueError(
                    f"{lang}: setup scores {a.shape} and baseline scores {b.shape} are not paired "
                    f"(seeds x examples must match)"
                )
            a = a - b
        diffs[lang] = a
    n_seeds = diffs[languages[0]].shape[0]
    if any(d.shape[0] != n_seeds for d in diffs.values()):
        raise ValueError("every language needs scores from the same seeds")
    rng = np.random.default_rng(seed)
    seed_draw = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    sizes = {lang: d.shape[1] for lang, d in diffs.items()}
    shared = len(set(sizes.values())) == 1
    common = rng.integers(0, sizes[languages[0]], size=(resamples, sizes[languages[0]])) if shared else None
    per_language, replicates = {}, {}
    for lang, d in diffs.items():
        examples = common if shared else rng.integers(0, sizes[lang], size=(resamples, sizes[lang]))
        by_seed = np.stack([d[s][examples].mean(axis=1) for s in range(n_seeds)], axis=1)  # (resamples, seeds)
        replicates[lang] = np.take_along_axis(by_seed, seed_draw, axis=1).mean(axis=1)
        per_language[lang] = _summary(float(d.mean()), replicates[lang], confidence, n_seeds, sizes[lang], TWO_WAY)
    average = np.mean([replicates[lang] for lang in languages], axis=0)
    point = float(np.mean([diffs[lang].mean() for lang in languages]))
    return {
        "per_language": per_language,
        "average": _summary(point, average, confidence, n_seeds, sum(sizes.values()), TWO_WAY),
    }


def seed_bootstrap(
    setup: Mapping[str, Sequence[float]],
    baseline: Mapping[str, Sequence[float]] | None = None,
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """The same figures from per-seed scores only (metrics that are not means over examples): seeds are
    resampled, paired between setup and baseline; test-set sampling is not counted."""
    languages = list(setup)
    diffs = {
        lang: np.asarray(setup[lang], dtype=np.float64)
        - (np.asarray(baseline[lang], dtype=np.float64) if baseline is not None else 0.0)
        for lang in languages
    }
    n_seeds = len(diffs[languages[0]])
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, n_seeds, size=(resamples, n_seeds))
    usable = n_seeds > 1
    per_language = {
        lang: _summary(float(d.mean()), d[draw].mean(axis=1) if usable else None, confidence, n_seeds, None, SEEDS_ONLY)
        for lang, d in diffs.items()
    }
    stacked = np.stack([diffs[lang] for lang in languages])  # (languages, seeds)
    average = stacked.mean(axis=0)
    return {
        "per_language": per_language,
        "average": _summary(
            float(average.mean()), average[draw].mean(axis=1) if usable else None, confidence, n_seeds, None, SEEDS_ONLY
        ),
    }


def spread(values: Sequence[float]) -> dict:
    """Mean and standard deviation over seeds (the std says how much a single run can be trusted)."""
    values = list(values)
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }
