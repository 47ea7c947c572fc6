"""One seed fixes a run: the same command and seed give bitwise-identical adapter and head tensors, in two
separate processes and in one process whatever ran before; another seed gives other tensors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapterx.cli.main import main
from adapterx.methods import parse_spec
from adapterx.tasks import get_task
from adapterx.training.loop import TrainConfig
from adapterx.training.seeding import derived_seed
from adapterx.training.workflow import train_task

ROOT = Path(__file__).resolve().parent.parent
# dropout > 0: the dropout masks are drawn too, and must be pinned by the seed as well
ADAPTER = "kind=lora,r=4,alpha=8,dropout=0.1"
FILES = ("adapter_model.safetensors", "head.safetensors")


def _tensors(adapter_dir: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in FILES:
        out.update({f"{name}:{k}": v for k, v in load_file(str(adapter_dir / name)).items()})
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _train_command(output: Path, seed: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "adapterx.cli",
        "train",
        "--task",
        "tiny-xnli",
        "--adapter",
        ADAPTER,
        "--max-steps",
        "4",
        "--batch-size",
        "8",
        "--train-limit",
        "32",
        "--eval-every",
        "4",
        "--seed",
        str(seed),
        "--output",
        str(output),
    ]


@pytest.mark.slow  # a fresh process or a whole study: seconds; runs in CI with -m slow
def test_same_seed_in_two_processes_gives_identical_adapter_files(tmp_path):
    """A fresh Python process and this test process (which has run other tests before: its generators are in any
    state) run the same command; both on one thread, as thread counts may change float summation order."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_OFFLINE": "1"}
    fresh = subprocess.Popen(
        _train_command(tmp_path / "fresh", seed=7),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.rand(100)  # whatever this process drew before must not matter
        assert main(_train_command(tmp_path / "here", seed=7)[3:]) == 0
    finally:
        torch.set_num_threads(threads)
    output, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, output
    first, second = (_tensors(tmp_path / name / "adapter") for name in ("fresh", "here"))
    assert first and _same(first, second)
    # training changed the tensors (a LoRA B starts at zero): the comparison is not between two initial states
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in first.items())


def test_seed_pins_init_order_and_dropout_whatever_ran_before_in_the_process(pristine_backbone, tmp_path):
    spec = parse_spec({"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.1})
    task = get_task("tiny-xnli")

    def run(name: str, seed: int) -> dict[str, torch.Tensor]:
        config = TrainConfig(max_steps=4, batch_size=8, learning_rate=3e-3, seed=seed)
        trained = train_task(
            pristine_backbone, task, spec, config, tmp_path / name, train_limit=32, eval_limit=8, progress=False
        )
        return _tensors(trained.directory)

    first = run("a", seed=5)
    torch.rand(1000)  # what ran before must not matter
    again = run("b", seed=5)
    other = run("c", seed=6)
    assert _same(first, again)
    assert not _same(first, other)
    head_key = next(k for k in first if k.startswith("head.safetensors:"))
    assert not torch.equal(first[head_key], other[head_key])  # the head's initialisation follows the seed too


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(0, "shuffle", "tiny-nli") == derived_seed(0, "shuffle", "tiny-nli")
    assert len({derived_seed(s, p) for s in range(5) for p in ("shuffle", "order")}) == 10
