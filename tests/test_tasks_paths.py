"""Every task's whole path on the fixtures (tests/fixtures/<task>/<split>.<lang>.<ext>, real formats):
load → normalise → encode → tiny model (a training step where the task trains) → predictions → metric; with
`-m slow` also through builtin:multilingual-e5-small (XLM-R's real tokenizer on a pretrained encoder).
Plus oracle checks that each processor's label alignment and postprocessing are exact."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import (
    RetrievalProcessor,
    evaluate_language,
    evaluate_on_split,
    mine_pairs,
    nearest,
    processor_for,
)

FIXTURES = Path(__file__).parent / "fixtures"
# (split, language) evaluated for each task: a non-English language where the task has one
EVALUATED = {
    "anli": ("validation", "en"),
    "ccg": ("validation", "en"),
    "commonsenseqa": ("validation", "en"),
    "cosmosqa": ("validation", "en"),
    "hellaswag": ("validation", "en"),
    "mnli": ("validation", "en"),
    "qqp": ("validation", "en"),
    "squad": ("validation", "en"),
    "sst2": ("validation", "en"),
    "xnli": ("test", "de"),
    "pawsx": ("test", "de"),
    "udpos": ("test", "de"),
    "panx": ("test", "de"),
    "xquad": ("test", "de"),
    "mlqa": ("test", "de"),
    "tydiqa": ("test", "fi"),
    "bucc2018": ("test", "de"),
    "tatoeba": ("test", "de"),
}


@pytest.fixture(params=["builtin:tiny-xlmr", pytest.param("builtin:multilingual-e5-small", marks=pytest.mark.slow)])
def any_backbone(request):
    """The tiny backbone, and (slow) the real encoder with XLM-R's real tokenizer (see test_e5small.py)."""
    if request.param == "builtin:tiny-xlmr":
        return request.getfixturevalue("backbone")
    return request.getfixturevalue("e5_backbone").fresh_copy()


@pytest.mark.parametrize("name", list(EVALUATED))
def test_full_path_on_fixtures(name, any_backbone):
    backbone = any_backbone
    task = get_task(name)
    tokenizer = backbone.tokenizer
    model = AdaptedModel(backbone)
    if task.trainable:
        model.add_head(name, HeadSpec(task.head, task.num_labels, dict(task.options.get("head", {}))))
        processor = processor_for(task)
        rows = load_split(task, "train", data_dir=FIXTURES)
        encoded = processor.encode(task, rows, tokenizer)
        batch = next(iter(DataLoader(encoded, batch_size=8, collate_fn=processor.collator(tokenizer))))
        assert set(batch) == {"input_ids", "attention_mask", "labels"}  # what the training loop passes on
        model.train()
        loss = model(**batch).loss
        loss.backward()
        assert math.isfinite(loss.item())
        assert any(p.grad is not None for p in model.heads[name].parameters())
    split, language = EVALUATED[name]
    mode = model.training
    scores = evaluate_language(model, task, tokenizer, split, language, data_dir=FIXTURES, batch_size=4)
    primary = next(iter(scores))
    assert (
        primary
        in {
            "accuracy": ("accuracy",),
            "pos_accuracy": ("accuracy",),
            "ner_f1": ("f1",),
            "pos_f1": ("f1",),
            "squad": ("f1",),
            "mlqa": ("f1",),
            "bucc_f1": ("f1",),
            "tatoeba_accuracy": ("accuracy",),
        }[task.metric]
    )
    assert all(0.0 <= v <= 100.0 for k, v in scores.items() if k != "threshold")
    assert model.training == mode  # evaluation restores the mode it found


def _oracle(encoded, processor, tokenizer, make):
    """Predictions from logits that put all mass on the gold labels."""
    predictions = []
    for batch in DataLoader(encoded, batch_size=4, collate_fn=processor.collator(tokenizer)):
        predictions.extend(processor.predict(make(batch), batch))
    return predictions


def _one_hot(labels, n):
    return torch.nn.functional.one_hot(labels.clamp(min=0), n).float() * 10


@pytest.mark.parametrize(
    "name, split, language", [("panx", "test", "de"), ("udpos", "train", "en"), ("ccg", "train", "en")]
)
def test_tagging_labels_sit_on_first_subwords(name, split, language, pristine_backbone):
    tokenizer, task = pristine_backbone.tokenizer, get_task(name)
    processor = processor_for(task)
    rows = load_split(task, split, language, FIXTURES)
    encoded = processor.encode(task, rows, tokenizer)
    for enc, tokens in zip(encoded, rows["tokens"]):
        assert sum(label != -100 for label in enc["labels"]) == len(tokens)
    predictions = _oracle(encoded, processor, tokenizer, lambda b: _one_hot(b["labels"], task.num_labels))
    assert next(iter(processor.score(task, predictions, encoded, rows).values())) == 100.0


def test_long_sentences_are_split_so_every_word_is_scored(pristine_backbone):
    """XTREME splits a sentence longer than the window into parts; a perfect tagger then scores 100 (truncation
    left the cut words without a prediction, scored as "O": recall < 100 here)."""
    tokenizer, task = pristine_backbone.tokenizer, dataclasses.replace(get_task("panx"), max_length=5)
    processor = processor_for(task)
    rows = load_split(task, "test", "de", FIXTURES)
    encoded = processor.encode(task, rows, tokenizer)
    assert len(encoded) > len(rows) and max(len(e["input_ids"]) for e in encoded) <= 5
    assert sorted(set(encoded["sentence"])) == list(range(len(rows)))
    predictions = _oracle(encoded, processor, tokenizer, lambda b: _one_hot(b["labels"], task.num_labels))
    assert processor.score(task, predictions, encoded, rows) == {"f1": 100.0, "precision": 100.0, "recall": 100.0}


def test_span_qa_windows_labels_and_postprocessing(pristine_backbone):
    tokenizer, task = pristine_backbone.tokenizer, get_task("squad")
    processor = processor_for(task)
    rows = load_split(task, "validation", "en", FIXTURES)
    encoded = processor.encode(task, rows, tokenizer)
    assert len(encoded) > len(rows)  # the long context is cut into windows
    windows = [e for e in encoded if e["example_index"] == 2]
    assert len(windows) >= 2 and max(len(w["input_ids"]) for w in windows) <= tokenizer.model_max_length
    assert sum(w["labels"] != [0, 0] for w in windows) >= 1
    for enc in encoded:  # labels point at the answer's tokens
        start, end = enc["labels"]
        if (start, end) != (0, 0):
            context, answer = rows[enc["example_index"]]["context"], rows[enc["example_index"]]["answers"]["text"][0]
            assert context[enc["offset_mapping"][start][0] : enc["offset_mapping"][end][1]].strip() == answer

    def make(batch):
        logits = torch.full((*batch["input_ids"].shape, 2), -10.0)
        for i, (s, e) in enumerate(batch["labels"].tolist()):
            if (s, e) != (0, 0):
                logits[i, s, 0] = logits[i, e, 1] = 10.0
        return logits

    predictions = _oracle(encoded, processor, tokenizer, make)
    assert processor.postprocess(task, predictions, encoded, rows) == [a["text"][0] for a in rows["answers"]]
    assert processor.score(task, predictions, encoded, rows) == {"f1": 100.0, "exact_match": 100.0}


@pytest.mark.parametrize("name", ["hellaswag", "cosmosqa", "commonsenseqa"])
def test_multiple_choice_flattens_choices(name, pristine_backbone):
    tokenizer, task = pristine_backbone.tokenizer, get_task(name)
    processor = processor_for(task)
    rows = load_split(task, "train", "en", FIXTURES)
    encoded = processor.encode(task, rows, tokenizer)
    batch = processor.collator(tokenizer)([encoded[i] for i in range(len(encoded))])
    assert batch["input_ids"].shape[0] == len(rows) * task.num_labels and batch["labels"].shape == (len(rows),)
    predictions = _oracle(encoded, processor, tokenizer, lambda b: _one_hot(b["labels"], task.num_labels))
    assert processor.score(task, predictions, encoded, rows) == {"accuracy": 100.0}


def test_retrieval_scoring_and_mining():
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.1, 0.0, 1.0]]), dim=-1)
    y = x[[2, 0, 1]]
    assert nearest(x, y, "cosine") == [1, 2, 0]
    assert nearest(x, y, "margin", k=2) == [1, 2, 0]
    mined = mine_pairs(x, y, "margin", k=2)
    assert set(mined) == {(0, 1), (1, 2), (2, 0)}


def test_retrieval_layer_defaults_to_the_papers_depth():
    task = get_task("tatoeba")
    assert [RetrievalProcessor.layer(task, n) for n in (24, 12, 2)] == [14, 7, 1]
    assert RetrievalProcessor.layer(task, 24, 3) == 3
    with pytest.raises(Exception, match="layer 30 does not exist"):
        RetrievalProcessor.layer(task, 24, 30)


def test_bucc_test_threshold_comes_from_dev(pristine_backbone):
    task, tokenizer = get_task("bucc2018"), pristine_backbone.tokenizer
    dev = evaluate_on_split(pristine_backbone.model, task, load_split(task, "validation", "de", FIXTURES), tokenizer)
    test = evaluate_language(pristine_backbone.model, task, tokenizer, "test", "de", data_dir=FIXTURES)
    assert test["threshold"] == pytest.approx(dev["threshold"])
    own = evaluate_on_split(
        pristine_backbone.model, task, load_split(task, "test", "de", FIXTURES), tokenizer, dev_rows=None
    )
    assert set(own) == set(test)


def test_mining_matches_a_direct_transcription_of_laser_max_retrieval():
    """XTREME mines BUCC with LASER's mine_bitext (ratio margin, k=4, retrieval 'max'); compare on random data."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(7, 5, generator=gen), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(6, 5, generator=gen), dim=-1)
    k = 4
    sims = x @ y.T
    x_mean = sims.topk(k, dim=1).values.mean(1)
    y_mean = sims.T.topk(k, dim=1).values.mean(1)
    x2y_ind, y2x_ind = sims.topk(k, dim=1).indices, sims.T.topk(k, dim=1).indices
    fwd = [max(((sims[i, j] / ((x_mean[i] + y_mean[j]) / 2)).item(), int(j)) for j in x2y_ind[i]) for i in range(7)]
    bwd = [max(((sims[i, j] / ((x_mean[i] + y_mean[j]) / 2)).item(), int(i)) for i in y2x_ind[j]) for j in range(6)]
    items = [(s, i, j) for i, (s, j) in enumerate(fwd)] + [(s, i, j) for j, (s, i) in enumerate(bwd)]
    expected, seen_x, seen_y = {}, set(), set()
    for s, i, j in sorted(items, key=lambda t: -t[0]):
        if i not in seen_x and j not in seen_y:
            seen_x.add(i)
            seen_y.add(j)
            expected[(i, j)] = s
    mined = mine_pairs(x, y, "margin", k)
    assert mined.keys() == expected.keys()
    assert all(mined[p] == pytest.approx(expected[p], rel=1e-5) for p in mined)
