"""Fault injection, resume (issue 15, cases 3 and 12's log): a run killed after a checkpoint resumes into
exactly the uninterrupted run (weights, loss log, evaluations, time); --resume refuses a checkpoint of another
configuration and names the fields that differ; a fresh run refuses a non-empty output unless --overwrite;
pruning never keeps another run's checkpoints in place of this run's."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import adapterx.training.loop as loop
from adapterx.training.checkpoint import _prune, latest_checkpoint

RUN = [
    "--task",
    "tiny-xnli",
    "--max-steps",
    "4",
    "--batch-size",
    "8",
    "--train-limit",
    "32",
    "--checkpoint-every",
    "1",
    "--eval-every",
    "1",
]


class Killed(BaseException):
    """The process dying (kill -9) right after a checkpoint was written."""


def train(kit, out, *extra):
    torch.manual_seed(1234)  # the fresh adapter's and head's initial weights come from the global generator
    return kit.cli("train", "--output", out, *RUN, *extra)


def killed_after(kit, monkeypatch, out, step: int, *extra):
    real = loop.save_checkpoint

    def save_then_die(directory, trainable, optimizer, state, keep):
        path = real(directory, trainable, optimizer, state, keep)
        if state["step"] == step:
            raise Killed()
        return path

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(kit, out, *extra)
    monkeypatch.setattr(loop, "save_checkpoint", real)
    assert latest_checkpoint(out / "checkpoints").name == f"step-{step}"


def _meta(out):
    return json.loads((out / "adapter" / "adapterx.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(kit, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    code, _, err = train(kit, out)
    assert code == 0, err
    return out


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_a_resumed_run_is_the_uninterrupted_run(kit, uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "run"
    killed_after(kit, monkeypatch, out, 2)
    seconds_before = json.loads((out / "checkpoints" / "step-2" / "state.json").read_text())["seconds"]
    code, _, err = train(kit, out, "--resume")
    assert code == 0, err
    whole, resumed = _meta(uninterrupted)["training"], _meta(out)["training"]
    assert [s for s, _ in resumed["losses"]] == [1, 2, 3, 4]
    assert torch.allclose(torch.tensor(resumed["losses"]), torch.tensor(whole["losses"]), atol=1e-6)
    assert [e["step"] for e in resumed["evals"]] == [1, 2, 3, 4]
    assert resumed["seconds"] >= round(seconds_before, 2) > 0
    for name in ("adapter_model.safetensors", "head.safetensors"):
        a, b = load_file(uninterrupted / "adapter" / name), load_file(out / "adapter" / name)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert not (out / "checkpoints").exists()


@pytest.fixture
def interrupted(kit, tmp_path, monkeypatch):
    out = tmp_path / "run"
    killed_after(kit, monkeypatch, out, 2)
    return out


@pytest.mark.parametrize(
    "extra, fields",
    [
        (["--lr", "0.5"], ["train.learning_rate", "0.001", "0.5"]),
        (["--task", "tiny-nli"], ["tasks", "tiny-xnli", "tiny-nli"]),
        (["--adapter", "kind=lora,r=4"], ["spec.r"]),
        (["--seed", "3"], ["train.seed"]),
        (["--train-limit", "16"], ["data.train_limit"]),
        (["--backbone", "builtin:tiny-xlmr@1"], ["backbone"]),
    ],
)
def test_resume_refuses_another_configuration(kit, interrupted, tmp_path, extra, fields):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(
        ["train", "--output", interrupted, *RUN, *extra, "--resume"],
        str(interrupted / "checkpoints" / "step-2"),
        *fields,
    )
    assert kit.snapshot(tmp_path) == before


def test_a_fresh_run_refuses_a_directory_with_another_runs_checkpoints(kit, interrupted, tmp_path):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(["train", "--output", interrupted, *RUN], str(interrupted), "--resume", "--overwrite")
    assert kit.snapshot(tmp_path) == before


def test_a_fresh_run_refuses_a_finished_run_unless_overwrite(kit, uninterrupted, tmp_path):
    out = tmp_path / "run"
    assert train(kit, out)[0] == 0
    before = kit.snapshot(tmp_path)
    kit.one_line_error(["train", "--output", out, *RUN], str(out), "--overwrite")
    kit.one_line_error(["train", "--output", out, *RUN, "--resume"], "nothing to resume")
    assert kit.snapshot(tmp_path) == before
    code, _, err = train(kit, out, "--overwrite", "--lr", "0.002")
    assert code == 0, err
    assert _meta(out)["training"]["config"]["learning_rate"] == 0.002


def test_overwrite_clears_stale_checkpoints_so_pruning_keeps_this_runs(kit, interrupted, monkeypatch):
    stale = interrupted / "checkpoints" / "step-2"
    (interrupted / "checkpoints" / "step-100").mkdir()
    for name in ("trainable.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"):
        (interrupted / "checkpoints" / "step-100" / name).write_bytes((stale / name).read_bytes())
    killed_after(kit, monkeypatch, interrupted, 3, "--overwrite", "--lr", "0.002")
    steps = sorted(p.name for p in (interrupted / "checkpoints").iterdir())
    assert steps == ["step-2", "step-3"]
    state = json.loads((interrupted / "checkpoints" / "step-2" / "state.json").read_text())
    assert state["run_config"]["train"]["learning_rate"] == 0.002


def test_pruning_removes_only_this_runs_older_checkpoints(tmp_path):
    for step, digest in ((1, "mine"), (2, "mine"), (3, "mine"), (50, "other"), (100, "other")):
        (tmp_path / f"step-{step}").mkdir()
        (tmp_path / f"step-{step}" / "state.json").write_text(json.dumps({"run_digest": digest}))
    _prune(tmp_path, 2, "mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-100", "step-2", "step-3", "step-50"]
