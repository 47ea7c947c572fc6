"""Fault injection, bad input (issue 15, cases 1, 2, 6 and 7): every bad option, recipe field or data file
ends in exit 2 with one line naming the option, field or file, no traceback, and nothing on disk changed."""

from __future__ import annotations

import json

import pytest

TINY_TRAIN = ["--max-steps", "2", "--batch-size", "8", "--train-limit", "16"]


def _train(out, *extra):
    return ["train", "--task", "tiny-xnli", "--output", out, *TINY_TRAIN, *extra]


# ----------------------------------------------------------------------------- case 1: empty training set
@pytest.mark.parametrize("limit", ["0", "-3"])
def test_a_zero_or_negative_train_limit_is_refused_not_looped_on(kit, tmp_path, limit):
    before = kit.snapshot(tmp_path)
    with kit.deadline(30):
        kit.one_line_error(
            ["train", "--task", "tiny-xnli", "--output", tmp_path / "run", "--max-steps", "2", "--train-limit", limit],
            "--train-limit",
            limit,
        )
    assert kit.snapshot(tmp_path) == before


@pytest.mark.parametrize("field", ["target.train_limit", "intermediate.train_limit"])
def test_a_zero_train_limit_in_a_recipe_fails_the_dry_run(kit, tmp_path, field):
    section = field.split(".")[0]
    old = (
        "  train_limit: 16\n  train: {max_steps: 2, batch_size: 8}\nevaluate"
        if section == "target"
        else "  train_limit: 16\n  train: {max_steps: 2, batch_size: 8}\ntarget"
    )
    path = kit.recipe_file(tmp_path, tmp_path / "out", (old, old.replace("train_limit: 16", "train_limit: 0")))
    before = kit.snapshot(tmp_path)
    with kit.deadline(30):
        kit.one_line_error(["run", path, "--dry-run"], str(path), field)
    assert kit.snapshot(tmp_path) == before


def test_an_empty_data_file_is_an_error_naming_task_split_and_limit(kit, tmp_path):
    data = tmp_path / "data" / "mnli"
    data.mkdir(parents=True)
    (data / "train.en.tsv").write_text("sentence1\tsentence2\tgold_label\n", encoding="utf-8")
    before = kit.snapshot(tmp_path)
    with kit.deadline(30):
        kit.one_line_error(
            [
                "train",
                "--task",
                "mnli",
                "--data-dir",
                tmp_path / "data",
                "--output",
                tmp_path / "run",
                "--max-steps",
                "2",
            ],
            "'mnli'",
            "train",
            "limit",
        )
    assert kit.snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- case 2: ranges of numbers
@pytest.mark.parametrize(
    "option, value",
    [
        ("--max-steps", "-5"),
        ("--max-steps", "0"),
        ("--epochs", "0"),
        ("--epochs", "nan"),
        ("--batch-size", "0"),
        ("--lr", "0"),
        ("--lr", "inf"),
        ("--lr", "nan"),
        ("--warmup", "-0.1"),
        ("--eval-every", "0"),
        ("--checkpoint-every", "-1"),
        ("--seed", "-1"),
    ],
)
def test_train_options_out_of_range_are_refused(kit, tmp_path, option, value):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(["train", "--task", "tiny-xnli", "--output", tmp_path / "run", option, value], option)
    assert kit.snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "argv, option",
    [
        (["evaluate", "--task", "tiny-xnli", "--adapter", "x", "--bootstrap", "0"], "--bootstrap"),
        (["evaluate", "--task", "tiny-xnli", "--adapter", "x", "--confidence", "1.5"], "--confidence"),
        (["evaluate", "--task", "tiny-xnli", "--adapter", "x", "--limit", "0"], "--limit"),
        (
            ["compose", "--adapter", "inter=x", "--adapter", "target=y", "--mode", "ties", "--density", "1.5"],
            "--density",
        ),
        (
            ["compose", "--adapter", "inter=x", "--adapter", "target=y", "--mode", "weighted", "--weights", "0.5,nan"],
            "--weights",
        ),
        (["merge", "--adapter", "x", "--output", "out", "--tolerance", "-1"], "--tolerance"),
        (["merge", "--adapter", "x", "--output", "out", "--tolerance", "nan"], "--tolerance"),
    ],
)
def test_other_numeric_options_out_of_range_are_refused(kit, tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)
    kit.one_line_error(argv, option)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "old, new, field",
    [
        (
            "train: {max_steps: 2, batch_size: 8}\nevaluate",
            "train: {max_steps: -5, batch_size: 8}\nevaluate",
            "target.train.max_steps",
        ),
        (
            "train: {max_steps: 2, batch_size: 8}\ntarget",
            "train: {max_steps: 2, batch_size: 8, epochs: .nan}\ntarget",
            "intermediate.train.epochs",
        ),
        (
            "train: {max_steps: 2, batch_size: 8}\nevaluate",
            "train: {max_steps: 2, eval_every: 0}\nevaluate",
            "target.train.eval_every",
        ),
        (
            "train: {max_steps: 2, batch_size: 8}\nevaluate",
            "train: {max_steps: 2, weight_decay: -1}\nevaluate",
            "target.train.weight_decay",
        ),
    ],
)
def test_recipe_train_fields_out_of_range_fail_the_dry_run(kit, tmp_path, old, new, field):
    path = kit.recipe_file(tmp_path, tmp_path / "out", (old, new))
    before = kit.snapshot(tmp_path)
    kit.one_line_error(["run", path, "--dry-run"], str(path), field)
    assert kit.snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- case 7: --dry-run checks all
@pytest.mark.parametrize(
    "old, new, field",
    [
        ("bench: {enabled: false}", "bench: {iterations: 0}", "bench.iterations"),
        ("bench: {enabled: false}", "bench: {clock: sundial}", "bench.clock"),
        ("bench: {enabled: false}", "bench: {batch_sizes: [0]}", "bench.batch_sizes"),
        ("bench: {enabled: false}", "bench: {seq_lens: [100000]}", "bench.seq_lens"),
        ("bench: {enabled: false}", "bench: {warmup: -1}", "bench.warmup"),
        ("bench: {enabled: false}", "bench: {shape: xlm-roberta-hug}", "bench.shape"),
        ("splits: [test]", "splits: [dev]", "evaluate.splits"),
        ("limit: 8", "limit: -5", "evaluate.limit"),
        ("forms: [unmerged]", "forms: [unmerged], bootstrap: 0", "evaluate.bootstrap"),
        ("{kind: lora, r: 4}", "{kind: lora, r: 4, alpha: sixteen}", "adapter.alpha"),
        ("{kind: lora, r: 4}", "{kind: lora, r: true}", "adapter.r"),
        ("{kind: lora, r: 4}", "{kind: lora, r: 4, target_modules: [nonexistent, value]}", "nonexistent"),
        ("{kind: lora, r: 4}", "{kind: lora, r: 4, target_modules: query}", None),
        ("{kind: lora, r: 4}", "{kind: prompt, num_virtual_tokens: 500}", "num_virtual_tokens"),
        ("backbone: builtin:tiny-xlmr", "backbone: builtin:tiny-xlmrr", "backbone"),
        ("backbone: builtin:tiny-xlmr", "backbone: builtin:tiny-xlmr@abc", "backbone"),
        ("seeds: [0]", "seeds: [-1]", "seeds"),
    ],
)
def test_the_dry_run_checks_every_field(kit, tmp_path, old, new, field):
    text_old, text_new = old, new
    if old == "seeds: [0]":
        text_old, text_new = "bench: {enabled: false}", "bench: {enabled: false}\nseeds: [-1]"
    path = kit.recipe_file(tmp_path, tmp_path / "out", (text_old, text_new))
    before = kit.snapshot(tmp_path)
    if field is None:  # accepted: a single module name is a list of one, not of letters
        code, out, err = kit.cli("run", path, "--dry-run")
        assert code == 0, err
    else:
        kit.one_line_error(["run", path, "--dry-run"], str(path), field)
    assert kit.snapshot(tmp_path) == before


def test_a_recipe_that_is_not_utf8_is_named(kit, tmp_path):
    path = kit.recipe_file(tmp_path, tmp_path / "out")
    path.write_bytes(path.read_bytes().replace(b"name: faults", b"name: fa\xe9lts"))
    before = kit.snapshot(tmp_path)
    kit.one_line_error(["run", path, "--dry-run"], str(path), "UTF-8")
    assert kit.snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- case 6: one-line errors
@pytest.mark.parametrize(
    "value, field",
    [
        ("kind=lora,r=true", "r"),
        ("kind=lora,alpha=abc", "alpha"),
        ("kind=lora,r=[1", "r"),
        ("kind=lora,r=2.5", "r"),
        ("kind=lora,dropout=x", "dropout"),
        ("kind=lora,target_modules=1", "target_modules"),
        ("kind=lora,target_modules=nonexistent+value", "nonexistent"),
        ("kind=bottleneck,reduction_factor=yes", "reduction_factor"),
        ("kind=prefix,prefix_projection=3", "prefix_projection"),
        ("kind=lora,r", "r"),
    ],
)
def test_adapter_option_values_are_typed(kit, tmp_path, value, field):
    before = kit.snapshot(tmp_path)
    message = kit.one_line_error(_train(tmp_path / "run", "--adapter", value), "--adapter", field)
    assert "Traceback" not in message
    assert kit.snapshot(tmp_path) == before


def test_a_single_target_module_is_not_split_into_letters(kit, tmp_path):
    code, _, err = kit.cli(*_train(tmp_path / "run", "--adapter", "kind=lora,r=2,target_modules=query"))
    assert code == 0, err
    meta = json.loads((tmp_path / "run" / "adapter" / "adapterx.json").read_text())
    assert meta["spec"]["target_modules"] == ["query"]


@pytest.mark.parametrize("backbone", ["builtin:tiny-xlmr@abc", "builtin:tiny-xlmrr", "./no/such/dir"])
def test_a_bad_backbone_name_is_one_line(kit, tmp_path, backbone):
    before = kit.snapshot(tmp_path)
    kit.one_line_error(_train(tmp_path / "run", "--backbone", backbone), backbone)
    assert kit.snapshot(tmp_path) == before


def test_a_data_file_that_is_not_utf8_is_named(kit, tmp_path):
    data = tmp_path / "data" / "mnli"
    data.mkdir(parents=True)
    (data / "train.en.tsv").write_bytes(b"sentence1\tsentence2\tgold_label\ncaf\xe9 ok\tthe man\tneutral\n")
    before = kit.snapshot(tmp_path)
    kit.one_line_error(
        ["train", "--task", "mnli", "--data-dir", tmp_path / "data", "--output", tmp_path / "run", "--max-steps", "1"],
        str(data / "train.en.tsv"),
        "UTF-8",
    )
    assert kit.snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["train", "merge", "compose"])
def test_an_output_that_is_an_existing_file_is_named(kit, tmp_path, command):
    target = tmp_path / "taken"
    target.write_text("mine\n")
    argv = {
        "train": _train(target),
        "merge": ["merge", "--adapter", tmp_path / "nothing", "--output", target],
        "compose": ["compose", "--adapter", f"a={tmp_path / 'nothing'}", "--output", target],
    }[command]
    before = kit.snapshot(tmp_path)
    kit.one_line_error(argv, str(target))
    assert kit.snapshot(tmp_path) == before
