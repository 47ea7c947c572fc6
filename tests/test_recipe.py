"""Recipes: every bad field is named; a run writes adapters, results and report; a rerun reuses it all."""

import json
import textwrap

import pytest

from adapterx.cli import main
from adapterx.errors import RecipeError
from adapterx.recipe import load_recipe

SMALL = """\
name: small
backbone: builtin:tiny-xlmr
output_dir: {out}
adapter: {{kind: lora, r: 4}}
intermediate:
  tasks: [tiny-nli]
  train_limit: 64
  train: {{max_steps: 4, batch_size: 16, learning_rate: 3.0e-3}}
target:
  task: tiny-xnli
  strategies: [stack, continue]
  train_limit: 32
  train: {{max_steps: 3, batch_size: 16}}
evaluate: {{split: test, limit: 24, languages: [en, de]}}
"""


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_quickstart_recipe_is_valid():
    recipe = load_recipe("recipes/quickstart.yaml")
    assert recipe.target.task == "tiny-xnli" and recipe.intermediate.tasks


@pytest.mark.parametrize("change, message", [
    (("target:\n", "target:\n  flavour: x\n"), r"unknown field 'target.flavour'"),
    (("max_steps: 3,", "max_stepz: 3,"), r"unknown field 'target.train.max_stepz'"),
    (("max_steps: 3,", "max_steps: three,"), r"'target.train.max_steps' must be int"),
    (("task: tiny-xnli", "task: tiny-xnlj"), r"unknown task 'tiny-xnlj'"),
    (("[stack, continue]", "[stack, glue]"), r"target.strategies: unknown strategy 'glue'"),
    (("languages: [en, de]", "languages: [en, xx]"), r"evaluate.languages: .* no language 'xx'"),
    (("{kind: lora, r: 4}", "{kind: lora, rank: 4}"), r"adapter: unknown field.*'rank'"),
    (("{kind: lora, r: 4}", "{kind: prefix-lora}"), r"unknown adapter kind 'prefix-lora'"),
    (("learning_rate: 3.0e-3", "learning_rate: 3.0"), r"intermediate.train.learning_rate: must be in"),
    (("name: small\n", ""), r"missing required field 'name'"),
])
def test_bad_recipe_fields_are_named(tmp_path, change, message):
    text = SMALL.format(out=tmp_path / "out").replace(*change)
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="mapping"):
        load_recipe(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(RecipeError, match="no such recipe"):
        load_recipe(tmp_path / "missing.yaml")


def test_run_writes_report_and_reuses_cached_phases(tmp_path, capsys):
    out = tmp_path / "out"
    path = _write(tmp_path, SMALL.format(out=out))
    assert main(["run", str(path)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["schema_version"] == 1
    assert set(results["runs"]) == {"target-only", "tiny-nli+stack", "tiny-nli+continue"}
    for run in results["runs"].values():
        assert set(run["per_language"]) == {"en", "de"}
    assert results["runs"]["tiny-nli+stack"]["modules_at_inference"] == 2
    report = (out / "report.md").read_text()
    assert "NOT pretrained" in report and "| tiny-nli+stack |" in report
    for name in ("tiny-nli", "target-only", "tiny-nli+stack", "tiny-nli+continue"):
        assert (out / "adapters" / name / "adapter" / "adapterx.json").is_file()
    assert not any(p["reused"] for p in results["phases"])

    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    again = json.loads((out / "results.json").read_text())
    assert all(p["reused"] for p in again["phases"])
    assert again["runs"] == results["runs"]

    assert main(["run", str(path), "--force"]) == 0
    forced = json.loads((out / "results.json").read_text())
    assert not any(p["reused"] for p in forced["phases"])


def test_changed_config_retrains_only_what_depends_on_it(tmp_path):
    out = tmp_path / "out"
    path = _write(tmp_path, SMALL.format(out=out))
    assert main(["run", str(path)]) == 0
    path.write_text(SMALL.format(out=out).replace("max_steps: 3,", "max_steps: 4,"))
    assert main(["run", str(path)]) == 0
    phases = {p["name"]: p["reused"] for p in json.loads((out / "results.json").read_text())["phases"]}
    assert phases["intermediate/tiny-nli"] is True
    assert phases["target/target-only"] is False and phases["target/tiny-nli+stack"] is False


def test_dry_run_and_cli_errors(tmp_path, capsys):
    path = _write(tmp_path, SMALL.format(out=tmp_path / "out"))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = _write(tmp_path, SMALL.format(out=tmp_path / "o").replace("task: tiny-xnli", "task: nope"), "bad.yaml")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "unknown task 'nope'" in err and "Traceback" not in err


def test_train_and_evaluate_commands(tmp_path, capsys):
    common = ["--train-limit", "48", "--max-steps", "3", "--batch-size", "16"]
    assert main(["train", "--task", "tiny-nli", "--adapter", "kind=lora,r=4,target_modules=query+value",
                 "--output", str(tmp_path / "nli"), *common]) == 0
    out = capsys.readouterr().out
    assert "trainable" in out and "saved to" in out
    assert main(["train", "--task", "tiny-xnli", "--adapter", "kind=lora,r=4", "--strategy", "stack",
                 "--on-top-of", str(tmp_path / "nli" / "adapter"), "--output", str(tmp_path / "x"), *common]) == 0
    assert main(["evaluate", "--task", "tiny-xnli", "--adapter", f"stacked={tmp_path / 'x' / 'adapter'}",
                 "--limit", "16", "--languages", "en,fr", "--output", str(tmp_path / "scores.json")]) == 0
    assert "| stacked |" in capsys.readouterr().out
    assert json.loads((tmp_path / "scores.json").read_text())["results"]["stacked"].keys() == {"en", "fr"}
    assert main(["train", "--task", "tiny-xnli", "--strategy", "stack", "--output", str(tmp_path / "y")]) == 2
    assert "--on-top-of" in capsys.readouterr().err
