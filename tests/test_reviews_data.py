"""The built-in review tasks: parallel evaluation sets, and no evaluation sentence (or clause of one) in any
training set, so that the study's outcome is not decided by overlap."""

from __future__ import annotations

import pytest

from adapterx.tasks import get_task, reviews
from adapterx.tasks.data import load_split


def _clauses_of(task: str, split: str) -> set[str]:
    return {part["en"] for item in reviews.split_items(task, split) for part in item[2]}


def test_sizes_labels_and_languages():
    task = get_task("reviews")
    assert task.languages == ("en", "de", "fr", "ru", "zh") and task.labels == ("negative", "positive")
    for language in task.languages:
        rows = load_split(task, "test", language, None)
        assert len(rows) >= 300 and set(rows["label"]) == {0, 1}
    assert len(load_split(task, "train", "en", None)) == reviews.SIZES["target"]["train"]


def test_evaluation_sets_are_parallel_translations():
    en = reviews.rows("reviews", "test", "en")
    for language in ("de", "fr", "ru", "zh"):
        other = reviews.rows("reviews", "test", language)
        assert [r["label"] for r in other] == [r["label"] for r in en]
        assert all(a["sentence"] != b["sentence"] for a, b in zip(en, other))
    assert any("\u0400" <= ch <= "\u04ff" for r in reviews.rows("reviews", "test", "ru") for ch in r["sentence"])


def test_no_evaluation_sentence_or_clause_in_any_training_set():
    evaluation = _clauses_of("reviews", "test") | _clauses_of("reviews", "validation")
    test_sentences = {r["sentence"] for r in reviews.rows("reviews", "test", "en")}
    for task in ("reviews", "reviews-sentiment", "reviews-topic"):
        training = {r["sentence"] for r in reviews.rows(task, "train", "en")}
        assert not test_sentences & training, task
        assert not evaluation & _clauses_of(task, "train"), task
        assert not any(clause in sentence for clause in evaluation for sentence in training), task


def test_topic_and_sentiment_share_inputs_not_labels():
    sentiment, topic = (reviews.rows(t, "train", "en") for t in ("reviews-sentiment", "reviews-topic"))
    assert [r["sentence"] for r in sentiment] == [r["sentence"] for r in topic]
    assert get_task("reviews-topic").labels == ("film", "book", "app")


def test_training_is_english_only():
    with pytest.raises(Exception, match="no 'train' data in language 'de'"):
        load_split(get_task("reviews"), "train", "de", None)
