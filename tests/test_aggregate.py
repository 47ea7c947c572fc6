"""The XTREME aggregation on hand-made records: task scores as evaluate.py (QA = (EM + F1) / 2, F1 before
accuracy), the XTREME and category scores, the ranking, and the best setup per target chosen on dev only."""

from __future__ import annotations

import pytest

from adapterx.study.aggregate import aggregate, task_score

TEST_BASE = {  # target -> {language: scores}: the baseline's test scores
    "xnli": {"de": {"accuracy": 70.0}, "en": {"accuracy": 80.0}},  # 75
    "pawsx": {"de": {"accuracy": 80.0}},  # 80
    "udpos": {"de": {"f1": 60.0, "accuracy": 90.0}},  # 60: F1, as evaluate.py
    "panx": {"de": {"f1": 50.0, "precision": 1.0, "recall": 1.0}},  # 50
    "xquad": {"de": {"f1": 70.0, "exact_match": 50.0}},  # (50 + 70) / 2 = 60
    "mlqa": {"de": {"f1": 60.0, "exact_match": 40.0}},  # 50
    "tydiqa": {"fi": {"f1": 50.0, "exact_match": 30.0}},  # 40
    "bucc2018": {"de": {"f1": 40.0, "precision": 1.0, "recall": 1.0, "threshold": 0.5}},  # 40
    "tatoeba": {"de": {"accuracy": 30.0}},  # 30
}
RETRIEVAL = ("bucc2018", "tatoeba")
MNLI, SQUAD = ("mnli", "continue"), ("squad", "continue")


def _shift(scores: dict, by: float) -> dict:
    return {
        lang: {k: (v + by if k in ("f1", "accuracy", "exact_match") else v) for k, v in s.items()}
        for lang, s in scores.items()
    }


def _record(target, setup, split, scores, seed=0, form="unmerged"):
    intermediate, strategy = setup
    if target in RETRIEVAL:
        strategy, seed = "direct", None
    return {
        "target": target,
        "label": "x",
        "intermediate": intermediate,
        "strategy": strategy,
        "seed": seed,
        "form": form,
        "split": split,
        "scores": scores,
    }


def _records() -> list[dict]:
    base = (None, "none")
    out = []
    for target, scores in TEST_BASE.items():
        out.append(_record(target, base, "test", scores))
        out.append(_record(target, MNLI, "test", _shift(scores, 10.0 if target == "tatoeba" else 2.0)))
        out.append(_record(target, SQUAD, "test", _shift(scores, 5.0 if target == "xnli" else 1.0)))
        out.append(_record(target, MNLI, "test", _shift(scores, 50.0), form="merged"))  # not aggregated
    # MNLI on xnli test over two seeds: 76 and 78, mean 77 (= 75 + 2, as above) -- replace the single seed
    out = [r for r in out if not (r["target"] == "xnli" and r["intermediate"] == "mnli" and r["form"] == "unmerged")]
    out.append(_record("xnli", MNLI, "test", {"de": {"accuracy": 72.0}, "en": {"accuracy": 80.0}}, seed=0))
    out.append(_record("xnli", MNLI, "test", {"de": {"accuracy": 74.0}, "en": {"accuracy": 82.0}}, seed=1))
    dev = {"xnli": (70.0, 71.0, 75.0), "panx": (50.0, 55.0, 52.0), "bucc2018": (40.0, 41.0, 41.0)}
    for target, (b, m, s) in dev.items():
        metric = "accuracy" if target == "xnli" else "f1"
        for setup, value in (((None, "none"), b), (MNLI, m), (SQUAD, s)):
            out.append(_record(target, setup, "validation", {"de": {metric: value}}))
    return out


def test_task_score_follows_evaluate_py():
    assert task_score(TEST_BASE["xquad"]) == 60.0 and task_score(TEST_BASE["udpos"]) == 60.0
    assert task_score(TEST_BASE["xnli"]) == 75.0 and task_score(TEST_BASE["bucc2018"]) == 40.0


def test_xtreme_and_category_scores():
    result = aggregate(_records(), list(TEST_BASE), "builtin:tiny-xlmr")
    test = result["splits"]["test"]
    base = test["overall"]["baseline"]
    assert base["xtreme"] == pytest.approx(485 / 9) and base["tasks"] == 9
    assert base["categories"] == pytest.approx(
        {"classification": 77.5, "structured prediction": 55.0, "question answering": 50.0, "retrieval": 35.0}
    )
    assert test["tasks"]["xnli"]["mnli+continue"]["score"] == pytest.approx(77.0)  # mean over two seeds
    assert test["tasks"]["xnli"]["mnli+continue"]["seeds"] == 2
    assert test["tasks"]["xquad"]["baseline"]["primary"] == 70.0  # F1, as the paper reports
    assert test["overall"]["mnli+continue"]["xtreme"] == pytest.approx((485 + 26) / 9)
    # dev covers three tasks only: no XTREME score and no complete category
    dev = result["splits"]["validation"]["overall"]["baseline"]
    assert dev["xtreme"] is None and dev["categories"]["classification"] is None and dev["tasks"] == 3
    assert result["paper"] is None


def test_ranking_by_mean_gain():
    ranking = aggregate(_records(), list(TEST_BASE), "x")["splits"]["test"]["ranking"]
    assert [r["setup"] for r in ranking] == ["mnli+continue", "squad+continue"]
    assert ranking[0]["mean_gain"] == pytest.approx(26 / 9) and ranking[1]["mean_gain"] == pytest.approx(13 / 9)
    assert ranking[0]["gains"]["tatoeba"] == pytest.approx(10.0)


def test_best_setup_per_target_is_chosen_on_dev_only():
    result = aggregate(_records(), list(TEST_BASE), "FacebookAI/xlm-roberta-large")
    best = {t: b["setup"] for t, b in result["best_per_target"].items()}
    # on dev: xnli squad (75 > 71), panx mnli (55 > 52), bucc2018 a tie (41 = 41) keeps the first, mnli
    assert (best["xnli"], best["panx"], best["bucc2018"]) == ("squad+continue", "mnli+continue", "mnli+continue")
    # no dev elsewhere: the best mean dev gain, squad (+5, +2, +1 → 8/3) over mnli (+1, +5, +1 → 7/3); on test
    # tatoeba would have gone to mnli (+10): the choice never looks at test
    for target in ("pawsx", "udpos", "xquad", "mlqa", "tydiqa", "tatoeba"):
        assert best[target] == "squad+continue", target
        assert "no held-out dev" in result["best_per_target"][target]["rule"]
    assert result["best_per_target"]["xnli"]["test_score"] == pytest.approx(80.0)
    assert result["best_per_target"]["xnli"]["dev_score"] == 75.0
    # composite: 80 + 81 + 61 + 52 + 61 + 51 + 41 + 42 + 31 = 500 over nine tasks, against 485 / 9
    overall = result["best_overall"]
    assert overall["xtreme"] == pytest.approx(500 / 9) and overall["baseline_mean"] == pytest.approx(485 / 9)
    assert result["paper"]["targets"]["xnli"] == ("accuracy", 79.2, 80.4)
