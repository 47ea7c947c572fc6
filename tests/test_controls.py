"""Controls: shuffled labels keep the label counts and lose the input-label link, reproducibly; pooled data
joins only where label spaces match; the capacity-matched adapter is as large as a stacked pair; step counts
are what training takes."""

import pytest

from adapterx.methods import parse_spec
from adapterx.study.controls import (
    capacity_matched_spec,
    label_space_problem,
    pooled_task,
    shuffled_task,
    training_steps,
)
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.training.loop import TrainConfig
from adapterx.training.workflow import train_task


def test_shuffled_labels_are_a_seeded_permutation_of_train_and_validation_only():
    task = get_task("tiny-negation")
    original = load_split(task, "train")
    first, again, other = (load_split(shuffled_task(task, s), "train") for s in (0, 0, 1))
    assert sorted(first["label"]) == sorted(original["label"])  # same label counts
    assert first["sentence"] == original["sentence"]  # same inputs, same order
    assert first["label"] == again["label"] and first["label"] != other["label"]
    agreement = sum(a == b for a, b in zip(first["label"], original["label"])) / len(original)
    assert 0.4 < agreement < 0.6  # two balanced classes: a permutation agrees about half the time
    assert load_split(shuffled_task(task, 0), "validation")["label"] != load_split(task, "validation")["label"]
    assert load_split(shuffled_task(task, 0), "test")["label"] == load_split(task, "test")["label"]
    assert shuffled_task(task, 0).name == "tiny-negation-shuffled"


def test_pooled_data_joins_where_label_spaces_match():
    target, nli = get_task("tiny-xnli"), get_task("tiny-nli")
    assert label_space_problem(target, nli) == ""
    assert "labels" in label_space_problem(target, get_task("tiny-sst"))
    pooled = load_split(pooled_task(target, nli, intermediate_limit=50), "train")
    own = load_split(target, "train")
    assert len(pooled) == len(own) + 50 and pooled["premise"][: len(own)] == own["premise"]
    assert load_split(pooled_task(target, nli), "test", "de")["premise"] == load_split(target, "test", "de")["premise"]
    with pytest.raises(ValueError, match="cannot pool tiny-sst"):
        pooled_task(target, get_task("tiny-sst"))


def test_capacity_matched_specs():
    lora, why = capacity_matched_spec(parse_spec({"kind": "lora", "r": 8, "alpha": 16}))
    assert (lora.r, lora.alpha) == (16, 32) and why == ""  # alpha / r, the LoRA scale, is kept
    bottleneck, _ = capacity_matched_spec(parse_spec({"kind": "bottleneck", "reduction_factor": 16}))
    assert bottleneck.reduction_factor == 8  # twice the bottleneck size
    none, why = capacity_matched_spec(parse_spec({"kind": "bottleneck", "reduction_factor": 3}))
    assert none is None and "not divisible" in why
    assert capacity_matched_spec(parse_spec({"kind": "prompt"}))[0] is None


def test_training_steps_is_what_training_takes(pristine_backbone, tmp_path):
    task = get_task("tiny-xnli")
    config = TrainConfig(epochs=1.5, batch_size=16, learning_rate=3e-3)
    expected = training_steps([task], config, None, 40)  # 40 rows: 3 batches an epoch, 1.5 epochs
    assert expected == 5
    trained = train_task(
        pristine_backbone,
        task,
        parse_spec({"kind": "lora", "r": 2}),
        config,
        tmp_path,
        train_limit=40,
        eval_limit=8,
        progress=False,
    )
    assert trained.result.steps == expected
    assert training_steps([get_task("tiny-nli"), get_task("tiny-sst")], config, None, 40) == 9  # 6 batches x 1.5
