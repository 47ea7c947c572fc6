"""Every example command line in every `--help` text (of the parser and each of its subcommands, as printed)
is run here, in document order, in one workspace, so a documented example can no longer fail
(issue 15, case 11). The examples are read from the parser itself; new ones are picked up without editing
this file. On the tiny setup: training examples get a few steps (--max-steps, --train-limit) and evaluation
examples a few rows (--limit), bench examples 3 timed rounds (and are slow-marked); the recipe example runs as
--dry-run here (test_quickstart_slow.py runs it in full); an example meant for a GPU must fail cleanly without
one."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from adapterx.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
QUICK = {
    "train": ["--max-steps", "4", "--train-limit", "32", "--batch-size", "8"],
    "evaluate": ["--limit", "16", "--bootstrap", "20"],
}
# inputs the examples name but no example makes: (directory, `adapterx train` options)
INPUTS = {
    "runs/base": ["--task", "tiny-xnli"],
    "runs/a": ["--task", "tiny-xnli"],
    "runs/b": ["--task", "tiny-xnli", "--seed", "1"],
    "runs/lang": ["--task", "tiny-nli", "--adapter", "kind=bottleneck,reduction_factor=8"],
    "runs/task": ["--task", "tiny-xnli", "--adapter", "kind=bottleneck,reduction_factor=8"],
}


def _texts(parser) -> list[str]:
    texts = [parser.format_help()]  # as printed (a lazy sub-command parser adds its texts on first use)
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for sub in action.choices.values():
                texts += _texts(sub)
    return texts


def help_examples() -> list[str]:
    """The example command lines (continuations joined, trailing comments and descriptions dropped)."""
    found = []
    for text in _texts(build_parser()):
        lines = text.splitlines()
        for i, line in enumerate(lines):
            command = line.strip()
            if not command.startswith("adapterx "):
                continue
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            command = re.split(r"\s{2,}", command.split("  #")[0])[0].strip()
            if command not in found:
                found.append(command)
    return found


EXAMPLES = help_examples()


def _param(command: str):
    argv = shlex.split(command)[1:]
    marks = []
    if argv[0] == "bench" and "--devices" not in argv:
        marks.append(pytest.mark.slow)
    return pytest.param(command, id=command[:80], marks=marks)


def test_the_help_texts_have_examples():
    commands = {shlex.split(c)[1] for c in EXAMPLES}
    assert {"run", "tasks", "train", "evaluate", "compose", "merge", "bench"} <= commands


@pytest.mark.parametrize("command", EXAMPLES)
def test_every_example_parses(command):
    argv = [a for a in shlex.split(command)[1:] if a != "..."]
    build_parser().parse_args(argv)


@pytest.fixture(scope="module")
def workspace(kit, tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(ROOT / "recipes", root / "recipes")
    for directory, options in INPUTS.items():
        code, _, err = kit.cli("train", "--output", root / directory, *options, *QUICK["train"])
        assert code == 0, err
    return root


@pytest.mark.parametrize("command", [_param(c) for c in EXAMPLES])
def test_every_example_runs(kit, command, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    argv = shlex.split(command)[1:]
    if "..." in argv:
        pytest.skip("a placeholder ('...') for options shown in the examples above it")
    if argv[0] == "run":
        argv.append("--dry-run")
    quick = QUICK.get(argv[0], [])
    for flag, value in zip(quick[::2], quick[1::2]):
        if flag not in argv:
            argv += [flag, value]
    if argv[0] == "bench" and "--quick" not in argv:  # the grid as shown, timed in 3 rounds (20 s at most)
        for flag, value in (("--iterations", "3"), ("--warmup", "0"), ("--max-seconds", "20")):
            argv = argv[: argv.index(flag)] + argv[argv.index(flag) + 2 :] if flag in argv else argv
            argv += [flag, value]
    code, out, err = kit.cli(*argv)
    if "--devices" in argv and "cuda" in argv and not torch.cuda.is_available():
        assert code == 2 and "cuda" in err.lower() and "Traceback" not in err, err[-2000:]
        return
    assert code == 0, f"adapterx {' '.join(argv)}\n{err[-3000:]}"
