"""Model selection as jiant's XTREME recipe: evaluate every N steps on English dev, stop after `patience`
evaluations without a gain, keep the best weights; resume keeps the best-so-far."""

from __future__ import annotations

import shutil

import pytest
import torch

from adapterx import store
from adapterx.cli.main import main as cli_main
from adapterx.core.errors import AdapterxError
from adapterx.core.heads import HeadSpec
from adapterx.core.model import AdaptedModel
from adapterx.deploy.setup import load_for_inference
from adapterx.methods import parse_spec
from adapterx.tasks import get_task
from adapterx.tasks.data import load_split
from adapterx.tasks.processing import evaluate_on_split, processor_for
from adapterx.training.loop import TrainConfig, train_adapter, trainable_state
from adapterx.training.selection import Selection
from adapterx.training.workflow import train_task


def test_selection_keeps_the_first_best_and_counts_patience():
    selection = Selection("best", patience=3)
    stops = [
        selection.update(step, {"f1": score, "precision": 0.0}, {"w": torch.full((1,), float(step))})
        for step, score in [(1, 50.0), (2, 60.0), (3, 55.0), (4, 60.0), (5, 58.0)]
    ]
    assert stops == [False, False, False, False, True]  # 3 evaluations without a gain after step 2
    assert (selection.best_step, selection.best_score, selection.metric) == (2, 60.0, "f1")  # a tie is no gain
    assert selection.best_state["w"].item() == 2.0 and selection.stopped_at == 5
    assert selection.chosen(5)["step"] == 2 and Selection("last").chosen(7)["step"] == 7


def _setup(backbone, rows=64):
    task = get_task("tiny-nli")
    processor = processor_for(task)
    data = processor.encode(task, load_split(task, "train", limit=rows), backbone.tokenizer)
    torch.manual_seed(0)
    model = AdaptedModel(backbone)
    store.add_adapter(model, "a", parse_spec({"kind": "lora", "r": 4}))
    store.activate(model, ["a"], trainable="a")
    model.add_head("a", HeadSpec("classification", 3, dict(task.options["head"])))
    return model, data, processor.collator(backbone.tokenizer)


class Scripted:
    """An evaluator with scripted dev scores that snapshots the weights it was shown, by step."""

    def __init__(self, scores: dict[int, float], every: int):
        self.scores, self.every, self.calls, self.seen = scores, every, 0, {}

    def start_at(self, step: int) -> "Scripted":
        self.calls = step // self.every
        return self

    def __call__(self, model) -> dict[str, float]:
        self.calls += 1
        step = self.calls * self.every
        self.seen[step] = {k: v.clone() for k, v in trainable_state(model, "a", "a").items()}
        return {"accuracy": self.scores[step]}


@pytest.mark.parametrize("select", ["best", "last"])
def test_training_keeps_the_best_weights_and_stops_on_patience(pristine_backbone, tmp_path, select):
    model, data, collate = _setup(pristine_backbone.fresh_copy())
    evaluator = Scripted({2: 10.0, 4: 30.0, 6: 20.0, 8: 25.0, 10: 40.0}, every=2)
    config = TrainConfig(max_steps=20, batch_size=16, learning_rate=5e-3, eval_every=2, patience=2, select=select)
    result = train_adapter(model, "a", "a", data, collate, config, tmp_path, evaluator=evaluator, progress=False)
    assert result.steps == 8 and [e["step"] for e in result.evals] == [2, 4, 6, 8]  # 2 evals without gain
    kept = 4 if select == "best" else 8
    assert result.selected["step"] == kept and result.selected["stopped_early_at"] == 8
    for key, value in trainable_state(model, "a", "a").items():
        assert torch.equal(value, evaluator.seen[kept][key]), key
    assert any(not torch.equal(evaluator.seen[4][k], evaluator.seen[8][k]) for k in evaluator.seen[4])  # it trained


def test_resume_keeps_the_best_so_far(pristine_backbone, tmp_path):
    scores = {2: 90.0, 4: 10.0, 6: 20.0, 8: 30.0, 10: 40.0, 12: 50.0}
    config = TrainConfig(max_steps=12, batch_size=16, learning_rate=5e-3, eval_every=2, checkpoint_every=4)
    full_model, data, collate = _setup(pristine_backbone.fresh_copy())
    full = Scripted(scores, every=2)
    train_adapter(full_model, "a", "a", data, collate, config, tmp_path / "full", evaluator=full, progress=False)

    cut_model, data, collate = _setup(pristine_backbone.fresh_copy())
    train_adapter(
        cut_model, "a", "a", data, collate, config, tmp_path / "cut", evaluator=Scripted(scores, 2), progress=False
    )
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-8")  # it died after the checkpoint of step 4
    resumed_model, data, collate = _setup(pristine_backbone.fresh_copy())
    result = train_adapter(
        resumed_model,
        "a",
        "a",
        data,
        collate,
        config,
        tmp_path / "cut",
        resume=True,
        evaluator=Scripted(scores, 2).start_at(4),
        progress=False,
    )
    assert result.resumed_from == 4 and result.selected["step"] == 2 and result.selected["score"] == 90.0
    for key, value in trainable_state(resumed_model, "a", "a").items():
        assert torch.equal(value, full.seen[2][key]), key


def test_saved_adapter_is_the_selected_one_and_says_so(pristine_backbone, tmp_path):
    task, spec = get_task("tiny-nli"), parse_spec({"kind": "lora", "r": 4})
    config = TrainConfig(max_steps=8, batch_size=16, learning_rate=2e-2, eval_every=1, eval_examples=40)
    trained = train_task(pristine_backbone, task, spec, config, tmp_path, train_limit=128, progress=False)
    meta = store.read_metadata(trained.directory)
    evals = meta["training"]["evals"]
    best = max(evals, key=lambda e: e["accuracy"])  # max returns the first of equal scores
    chosen = meta["training"]["selected"]
    assert (chosen["step"], chosen["score"], chosen["rule"]) == (best["step"], best["accuracy"], "best")
    assert meta["metrics"]["validation"]["accuracy"] == best["accuracy"]
    assert meta["metrics"]["validation_examples"] == 40
    model = load_for_inference(pristine_backbone.fresh_copy(), trained.directory)
    dev = load_split(task, "validation", "en", limit=40)
    assert evaluate_on_split(model, task, dev, pristine_backbone.tokenizer)["accuracy"] == pytest.approx(
        best["accuracy"]
    )


def test_train_cli_flags_and_recipe_fields(tmp_path, capsys):
    code = cli_main(
        [
            "train",
            "--task",
            "tiny-nli",
            "--output",
            str(tmp_path / "run"),
            "--max-steps",
            "4",
            "--batch-size",
            "16",
            "--train-limit",
            "64",
            "--eval-every",
            "1",
            "--eval-examples",
            "16",
            "--patience",
            "30",
            "--select",
            "best",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "kept the weights of step" in out and "(best, dev accuracy" in out
    config = store.read_metadata(tmp_path / "run" / "adapter")["training"]["config"]
    assert (config["patience"], config["eval_examples"], config["select"]) == (30, 16, "best")
    for bad in ({"patience": 0}, {"select": "worst"}, {"eval_examples": -1}):
        with pytest.raises(AdapterxError, match=next(iter(bad))):
            TrainConfig(**bad).validate()
