"""Scores exactly as XTREME's official code computes them (google-research/xtreme evaluate.py,
third_party/utils_retrieve.py, evaluate_retrieval.py, utils_preprocess.py): one test per way adapterx used to
differ. Expected values are worked out by hand from the official code, as the comments show."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import datasets
import pytest
import torch

from adapterx.core.errors import AdapterxError
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.metrics import bucc_f1, bucc_optimize_threshold, get_metric
from adapterx.tasks.processing import processor_for

FIXTURES = Path(__file__).parent / "fixtures"


def _unit(degrees: float) -> torch.Tensor:
    return torch.tensor([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])


# ------------------------------------------------------------------------------------------- 1. UDPOS
def test_udpos_is_scored_with_seqeval_f1_as_xtreme():
    """evaluate.py scores udpos with `f1` (seqeval). seqeval reads a tag's first letter as its prefix and the rest
    as its type: INTJ = I + "NTJ", PUNCT = P + "UNCT"; a type change ends a chunk."""
    score = get_metric(get_task("udpos").metric)
    # gold chunks (NTJ, 0-1), (UNCT, 2); predicted (NTJ, 0), (UNCT, 1-2): none equal → F1 0, accuracy 2/3
    result = score([["INTJ", "PUNCT", "PUNCT"]], [["INTJ", "INTJ", "PUNCT"]])
    assert next(iter(result)) == "f1"
    assert result["f1"] == 0.0 and result["accuracy"] == pytest.approx(200 / 3)
    # gold (OUN, 0-1), (ERB, 2); predicted (OUN, 0), (DJ, 1), (ERB, 2): P = 1/3, R = 1/2 → F1 = 0.4
    result = score([["NOUN", "ADJ", "VERB"]], [["NOUN", "NOUN", "VERB"]])
    assert result["f1"] == pytest.approx(40.0) and result["precision"] == pytest.approx(100 / 3)
    assert result["recall"] == pytest.approx(50.0) and result["accuracy"] == pytest.approx(200 / 3)


# ------------------------------------------------------------------------------------------- 2. Tatoeba
def test_tatoeba_queries_with_the_english_side():
    """evaluate_retrieval.py: similarity_search(x=source, y=English) indexes the source sentences and searches
    them with the English ones. Source s0 at 0°, s1 at 30°; English t0 at 14°, t1 at 60°: English → source
    finds s0 for t0 (14° vs 16°) and s1 for t1 → 100; source → English would send s1 to t0 (16° vs 30°) → 50."""
    task = get_task("tatoeba")
    encoded = {"side": [0, 0, 1, 1], "row": [0, 1, 0, 1]}
    embeddings = [_unit(0), _unit(30), _unit(14), _unit(60)]
    assert processor_for(task).score(task, embeddings, encoded, None) == {"accuracy": 100.0}


# ------------------------------------------------------------------------------------------- 3. BUCC data
def test_bucc_refuses_the_gold_only_hub_copy():
    with pytest.raises(AdapterxError, match="only the gold pairs.*de-en.sample.*de-en.training"):
        load_split(get_task("bucc2018"), "test", "de")


def test_bucc_reads_the_original_files_with_their_distractors():
    task = get_task("bucc2018")
    rows = load_split(task, "test", "de", FIXTURES)  # de-en.training.{de,en,gold}
    assert len([s for s in rows["source_sentence"] if s]) == 7 and len([t for t in rows["target_sentence"] if t]) == 6
    gold = {(s, t) for s, t in zip(rows["source_id"], rows["target_id"]) if s and t}
    assert gold == {("de-000101", "en-000102"), ("de-000102", "en-000101"), ("de-000104", "en-000104")}
    dev = load_split(task, "validation", "de", FIXTURES)  # de-en.sample.*
    assert len(dev) == 3 + 3 + 2  # 3 gold pairs, 3 unpaired German and 2 unpaired English sentences


def test_bucc_original_file_errors_name_the_files(tmp_path):
    folder = tmp_path / "bucc2018"
    folder.mkdir()
    (folder / "fr-en.sample.fr").write_text("fr-1\tle chien\n", encoding="utf-8")
    with pytest.raises(AdapterxError, match="needs fr-en.sample.en, fr-en.sample.gold"):
        load_split(get_task("bucc2018"), "validation", "fr", tmp_path)
    (folder / "fr-en.sample.en").write_text("en-1\tthe dog\n", encoding="utf-8")
    (folder / "fr-en.sample.gold").write_text("fr-1\ten-9\n", encoding="utf-8")
    with pytest.raises(AdapterxError, match=r"fr-en.sample.gold:1: .*absent"):
        load_split(get_task("bucc2018"), "validation", "fr", tmp_path)
    with pytest.raises(AdapterxError, match="expected .*fr-en.training.*present: fr-en.sample"):
        load_split(get_task("bucc2018"), "test", "fr", tmp_path)


def test_bucc_mines_among_distinct_sentences_and_drops_repeated_ones():
    """LASER's text_load_unify embeds a repeated sentence once; read_sent2id drops a sentence that occurs under
    two ids, so its pairs are no candidates. Here "a" is de-1 and de-3: cosine mining keeps (a, A) and (b, B)
    (C's best source, a at 0.6, is taken); only (de-2, en-2) stays a candidate, at 1.0. Gold (de-1, en-1) and
    (de-2, en-2): the best cut keeps the one candidate → P = 1, R = 1/2, F1 = 2/3, threshold its score."""
    task = dataclasses.replace(get_task("bucc2018"), options={"scoring": "cosine", "neighbours": 4})
    rows = datasets.Dataset.from_dict(
        {
            "source_id": ["de-1", "de-2", "de-3", ""],
            "source_sentence": ["a", "b", "a", ""],
            "target_id": ["en-1", "en-2", "", "en-3"],
            "target_sentence": ["A", "B", "", "C"],
        }
    )
    encoded = {"side": [0, 1, 0, 1, 0, 1], "row": [0, 0, 1, 1, 2, 3]}
    a, b, c = torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0]), torch.tensor([0.6, 0, 0.8])
    scores = processor_for(task).score(task, [a, a, b, b, a, c], encoded, rows)
    assert scores == {"f1": pytest.approx(200 / 3), "precision": 100.0, "recall": 50.0, "threshold": pytest.approx(1.0)}


# ------------------------------------------------------------------------------------------- 4. BUCC threshold
def test_bucc_threshold_is_zero_when_no_dev_candidate_is_correct():
    """bucc_optimize starts at threshold 0 and only moves where F1 > 0: no correct candidate → 0, which then keeps
    every pair scoring >= 0 (bucc_extract)."""
    dev = {("a", "1"): 0.9, ("b", "2"): 0.8}
    assert bucc_optimize_threshold(dev, {("c", "3")}) == 0.0
    # applied to a test set: all three pairs kept, one of them right → P = 1/3, R = 1/2, F1 = 0.4
    test = {("x", "1"): 1.2, ("y", "2"): 0.7, ("z", "3"): 0.1}
    scores = bucc_f1(test, {("x", "1"), ("w", "4")}, threshold=bucc_optimize_threshold(dev, {("c", "3")}))
    assert scores["f1"] == pytest.approx(40.0) and scores["precision"] == pytest.approx(100 / 3)


# ------------------------------------------------------------------------------------------- 5. PAN-X prefix
def test_panx_hub_tokens_are_not_stripped_again(monkeypatch):
    """The hub copy has the language prefix cut already: its tokens are kept as they are."""
    monkeypatch.setattr(
        datasets,
        "load_dataset",
        lambda *a, **k: datasets.Dataset.from_dict(
            {"tokens": [["10:30", "St:Moritz", "Zürich"]], "ner_tags": [[0, 5, 5]]}
        ),
    )
    assert load_split(get_task("panx"), "test", "de")["tokens"] == [["10:30", "St:Moritz", "Zürich"]]


def test_panx_original_files_lose_the_prefix_at_the_first_colon(tmp_path):
    """utils_preprocess.panx_preprocess: token = items[0][items[0].find(':') + 1:]."""
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx" / "test.de.conll").write_text("de:10:30\tO\nde:St:Moritz\tB-LOC\n", encoding="utf-8")
    assert load_split(get_task("panx"), "test", "de", tmp_path)["tokens"] == [["10:30", "St:Moritz"]]


# ------------------------------------------------------------------------------------------- 6. long sentences
def test_a_word_without_subwords_still_gets_a_prediction(pristine_backbone):
    """XTREME's convert_examples_to_features: a word that tokenises to nothing becomes the unknown token, so it
    carries its label (here the empty string, which the tiny tokenizer maps to no sub-word)."""
    task, tokenizer = get_task("udpos"), pristine_backbone.tokenizer
    assert tokenizer("", add_special_tokens=False)["input_ids"] == []
    rows = datasets.Dataset.from_dict({"tokens": [["der", "", "hund"]], "tags": [[5, 12, 7]]})
    encoded = processor_for(task).encode(task, rows, tokenizer)
    assert sum(label != -100 for label in encoded[0]["labels"]) == 3
    assert tokenizer.unk_token_id in encoded[0]["input_ids"]
