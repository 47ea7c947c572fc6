"""XTREME metrics on hand-computed cases."""

from __future__ import annotations

import pytest

from adapterx.tasks.metrics import (
    bucc_f1,
    bucc_optimize_threshold,
    get_metric,
    mlqa,
    mlqa_normalize,
    ner_f1,
    pos_accuracy,
    squad,
    squad_normalize,
    tatoeba_accuracy,
)


def test_accuracy():
    assert get_metric("accuracy")([1, 0, 2], [1, 1, 2]) == {"accuracy": pytest.approx(200 / 3)}
    with pytest.raises(ValueError):
        get_metric("accuracy")([1], [1, 2])


def test_squad_normalisation_and_scores():
    assert squad_normalize("The  Apple!") == "apple"
    assert squad_normalize("an «apple»") == "«apple»"  # SQuAD v1.1 strips ASCII punctuation only
    # pred tokens [big, red, apple], gold [red, apple]: P = 2/3, R = 1, F1 = 0.8
    assert squad(["the big red apple"], [["a red apple"]]) == {"f1": pytest.approx(80.0), "exact_match": 0.0}
    # the best over several gold answers counts; a question without overlap scores 0
    scores = squad(["Red apple.", "dog"], [["a red apple", "green pear"], ["cat"]])
    assert scores == {"f1": pytest.approx(50.0), "exact_match": pytest.approx(50.0)}


def test_mlqa_language_specific_normalisation():
    # German articles go under MLQA's German normalisation, not under SQuAD's English one
    assert mlqa_normalize("Der Hund", "de") == "hund"
    assert mlqa(["Der Hund"], [["Hund"]], language="de") == {"f1": 100.0, "exact_match": 100.0}
    # SQuAD: [der, hund] vs [hund] → P = 1/2, R = 1, F1 = 2/3
    assert squad(["Der Hund"], [["Hund"]])["f1"] == pytest.approx(200 / 3)
    assert mlqa(["el perro"], [["perro"]], language="es")["exact_match"] == 100.0
    # Unicode punctuation is removed (category P), unlike SQuAD's
    assert mlqa_normalize("«Berlin»", "en") == "berlin"
    # Chinese: mixed segmentation, one token per CJK character: [北,京,大,学] vs [北,京] → F1 = 2/3
    assert mlqa_normalize("北京大学", "zh") == "北 京 大 学"
    assert mlqa(["北京大学"], [["北京"]], language="zh") == {"f1": pytest.approx(200 / 3), "exact_match": 0.0}
    # Arabic: the prefix ال is dropped
    assert mlqa_normalize("الكتاب", "ar") == "كتاب"
    with pytest.raises(ValueError, match="MLQA has no normalisation"):
        mlqa_normalize("x", "fi")


def test_ner_entity_level_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    # PER correct, LOC predicted as ORG: 1 of 2 predicted, 1 of 2 gold → P = R = F1 = 50
    assert ner_f1([["B-PER", "I-PER", "O", "B-ORG"]], gold) == {"f1": 50.0, "precision": 50.0, "recall": 50.0}
    # a partially found entity does not count: PER(0) ≠ PER(0-1)
    assert ner_f1([["B-PER", "O", "O", "B-LOC"]], gold)["f1"] == 50.0
    assert ner_f1(gold, gold)["f1"] == 100.0
    with pytest.raises(ValueError, match="predicted tags"):
        ner_f1([["O"]], gold)


def test_pos_accuracy_counts_words():
    assert pos_accuracy([["DET", "NOUN"], ["VERB"]], [["DET", "VERB"], ["VERB"]]) == {
        "accuracy": pytest.approx(200 / 3)
    }


def test_bucc_threshold_chosen_for_best_f1():
    candidates = {("s1", "t1"): 0.9, ("s2", "t2"): 0.8, ("s3", "t9"): 0.7, ("s4", "t4"): 0.6}
    gold = {("s1", "t1"), ("s2", "t2"), ("s4", "t4"), ("s5", "t5")}
    # by falling score: F1 0.4, 0.667, 0.571, 0.75 → keep all four, threshold = the last score
    assert bucc_optimize_threshold(candidates, gold) == pytest.approx(0.6)
    scores = bucc_f1(candidates, gold)
    assert scores == {
        "f1": pytest.approx(75.0),
        "precision": pytest.approx(75.0),
        "recall": pytest.approx(75.0),
        "threshold": pytest.approx(0.6),
    }
    # a dev threshold applied as given: the two pairs above 0.75 are both right → P = 1, R = 1/2
    fixed = bucc_f1(candidates, gold, threshold=0.75)
    assert fixed["precision"] == 100.0 and fixed["recall"] == 50.0 and fixed["f1"] == pytest.approx(200 / 3)
    # the midpoint rule: best cut after the 2nd of three → threshold between 0.8 and 0.7
    assert bucc_optimize_threshold(
        {("a", "1"): 0.9, ("b", "2"): 0.8, ("c", "3"): 0.7}, {("a", "1"), ("b", "2")}
    ) == pytest.approx(0.75)
    assert bucc_f1({("a", "1"): 0.5}, {("b", "2")})["f1"] == 0.0


def test_tatoeba_accuracy():
    assert tatoeba_accuracy([0, 1, 3, 3], [0, 1, 2, 3]) == {"accuracy": 75.0}
