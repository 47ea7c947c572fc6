"""The CLI's choices and --help lists are read from the registries (a name registered at run time shows up), and
building the parser for `adapterx --help` imports no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapterx.cli.main import build_parser, main
from adapterx.deploy.compose import MODES, CompositionMode, Stack
from adapterx.deploy.forms import DEPLOYMENT_FORMS
from adapterx.training.strategies import STRATEGIES


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--help"])
    return capsys.readouterr().out


def test_train_offers_every_strategy_and_kind(capsys):
    text = " ".join(_help(capsys, "train").split())
    for name, strategy in STRATEGIES.items():
        assert f"{name} {strategy.about}" in text
    for kind in ("lora (r, alpha", "bottleneck (", "prefix (num_virtual_tokens", "prompt ("):
        assert kind in text
    args = build_parser().parse_args(
        ["train", "--task", "tiny-xnli", "--output", "o", "--strategy", "fuse", "--on-top-of", "a", "--on-top-of", "b"]
    )
    assert args.strategy == "fuse" and args.on_top_of == ["a", "b"]


def test_train_defaults_are_the_train_configs():
    from adapterx.training.loop import TrainConfig

    args = build_parser().parse_args(["train", "--task", "tiny-xnli", "--output", "o"])
    assert (args.epochs, args.batch_size, args.learning_rate, args.warmup_ratio, args.schedule, args.seed) == (
        TrainConfig.epochs,
        TrainConfig.batch_size,
        TrainConfig.learning_rate,
        TrainConfig.warmup_ratio,
        TrainConfig.schedule,
        TrainConfig.seed,
    )


def test_a_mode_registered_at_run_time_is_a_choice_of_compose(capsys, monkeypatch):
    monkeypatch.setattr(
        MODES,
        "_entries",
        {
            **{n: MODES.get(n) for n in MODES.names()},
            "upside-down": CompositionMode(
                "upside-down", "parts in reverse order", lambda names, w, d: Stack(*names[::-1])
            ),
        },
    )
    text = _help(capsys, "compose")
    assert "upside-down" in text and "parts in reverse order" in text
    assert build_parser().parse_args(["compose", "--mode", "upside-down"]).mode == "upside-down"


def test_evaluate_lists_the_evaluable_forms_and_refuses_the_others(capsys):
    text = _help(capsys, "evaluate")
    for name, form in DEPLOYMENT_FORMS.items():
        assert (name in text) == form.evaluable
    assert main(["evaluate", "--task", "tiny-xnli", "--adapter", "x", "--forms", "unmerged,mixed"]) == 2
    assert "--forms: form 'mixed'" in capsys.readouterr().err
    assert main(["evaluate", "--task", "tiny-xnli", "--adapter", "x", "--forms", "merge"]) == 2
    assert "did you mean 'merged'" in capsys.readouterr().err


def test_top_level_help_imports_no_torch():
    code = (
        "import sys; from adapterx.cli.main import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in ('torch', 'peft', 'adapters', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
