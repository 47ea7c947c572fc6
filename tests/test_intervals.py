"""Intervals over seeds x test examples: expected widths from the binomial standard error and from counting
bootstrap outcomes by hand, not from adapterx's own output."""

import numpy as np
import pytest

from adapterx.study.intervals import crossed_bootstrap, seed_bootstrap
from adapterx.study.pairing import verdict
from adapterx.study.predictions import collapse, confusion


def _bernoulli(n: int, ones: int, seed: int = 0) -> np.ndarray:
    values = np.array([100.0] * ones + [0.0] * (n - ones))
    return np.random.default_rng(seed).permutation(values)


def test_a_constant_paired_difference_has_a_zero_width_interval():
    base = np.stack([_bernoulli(300, 150, s) for s in range(3)])  # varies a lot from example to example
    up = base + 5.0  # every example of every seed +5 points
    out = crossed_bootstrap({"en": up, "de": up}, {"en": base, "de": base}, resamples=500)
    assert out["average"]["mean"] == pytest.approx(5.0)
    assert out["average"]["ci"] == pytest.approx([5.0, 5.0]) and out["average"]["shown"]
    same = crossed_bootstrap({"en": base}, {"en": base}, resamples=200)["average"]
    assert same["ci"] == [0.0, 0.0] and not same["shown"]


def test_test_set_sampling_is_counted_once_for_seeds_that_share_the_test_set():
    # three identical seeds (no seed variance) on 400 examples, half right: the mean's standard error is
    # 100 * sqrt(0.5 * 0.5 / 400) = 2.5 points, so a 95% interval is about +-1.96 * 2.5 = +-4.9. Resampling the
    # examples independently per seed (nested) would wrongly give +-4.9 / sqrt(3) = +-2.8.
    row = _bernoulli(400, 200)
    out = crossed_bootstrap({"en": np.stack([row, row, row])}, resamples=4000, seed=1)
    lo, hi = out["average"]["ci"]
    assert out["average"]["mean"] == pytest.approx(50.0)
    assert (hi - lo) / 2 == pytest.approx(1.96 * 2.5, rel=0.1)


def test_seed_variance_alone_two_seeds_by_hand():
    # two seeds, one always right, one always wrong: a replicate's mean is 0, 50 or 100 with probability
    # 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are 0 and 100
    scores = np.stack([np.full(50, 100.0), np.zeros(50)])
    out = crossed_bootstrap({"en": scores}, resamples=4000)
    assert out["average"]["mean"] == pytest.approx(50.0) and out["average"]["ci"] == pytest.approx([0.0, 100.0])


def test_languages_share_the_seed_draw_and_the_average_is_the_mean_of_languages():
    en = np.stack([_bernoulli(100, 80, s) for s in range(2)])
    de = np.stack([_bernoulli(100, 40, s + 5) for s in range(2)])
    out = crossed_bootstrap({"en": en, "de": de}, resamples=300)
    assert out["average"]["mean"] == pytest.approx((80 + 40) / 2)
    assert out["per_language"]["en"]["n_examples"] == 100 and out["average"]["n_seeds"] == 2
    with pytest.raises(ValueError, match="not paired"):
        crossed_bootstrap({"en": en}, {"en": en[:1]})


def test_seed_only_intervals_and_a_single_seed_gives_no_interval():
    out = seed_bootstrap({"en": [60.0, 70.0]}, {"en": [50.0, 50.0]}, resamples=4000)
    # per-seed differences 10 and 20: replicate means 10, 15, 20 with probability 1/4, 1/2, 1/4
    assert out["average"]["mean"] == pytest.approx(15.0) and out["average"]["ci"] == pytest.approx([10.0, 20.0])
    assert out["average"]["shown"] and out["average"]["n_examples"] is None
    single = seed_bootstrap({"en": [60.0]}, {"en": [50.0]})["average"]
    assert single["mean"] == 10.0 and not single["interval"] and not single["shown"]
    assert verdict(single, ">") == "no interval"


@pytest.mark.parametrize(
    "ci, direction, expected",
    [
        ([0.5, 3.0], ">", "held"),
        ([0.5, 3.0], "<", "contradicted"),
        ([-3.0, -0.5], "<", "held"),
        ([-3.0, 0.5], ">", "inconclusive"),
        ([-3.0, 0.5], "<", "inconclusive"),
    ],
)
def test_verdicts(ci, direction, expected):
    assert verdict({"mean": sum(ci) / 2, "ci": ci, "interval": True}, direction) == expected
    assert verdict(None, direction) == "not run"


def test_confusion_and_collapse():
    parts = {
        "gold": np.array([0, 0, 1, 1, 2, 2, 2, 2, 2, 2], dtype=np.uint8),
        "predicted": np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2], dtype=np.uint8),
    }
    matrix = confusion(parts, 3)
    assert matrix == [[0, 2, 0], [0, 2, 0], [0, 4, 2]]
    ninety = {"gold": parts["gold"], "predicted": np.array([1] * 9 + [2], dtype=np.uint8)}
    assert collapse(confusion(ninety, 3)) == (1, pytest.approx(0.9))
    assert collapse(confusion(parts, 3)) is None  # 80% of predictions in one class: not (yet) a collapse
    skewed = {"gold": np.array([1] * 10, dtype=np.uint8), "predicted": np.array([1] * 10, dtype=np.uint8)}
    assert collapse(confusion(skewed, 3)) is None  # the gold labels are that class: right, not collapsed
