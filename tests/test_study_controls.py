"""A study with controls and expectations: seeds on both phases, paired rows, per-example predictions kept,
confusion matrices, every control a row with its interval, expectations checked; and the recipe errors."""

import json
import textwrap

import numpy as np
import pytest
from safetensors.numpy import load_file

from adapterx.cli.main import main
from adapterx.core.errors import RecipeError
from adapterx.study.recipe import load_recipe
from adapterx.study.report import readme_summary

RECIPE = """\
name: controlled
backbone: builtin:tiny-xlmr
output_dir: {out}
adapter: {{kind: lora, r: 4}}
seeds: [0, 1]
intermediate:
  tasks: [tiny-nli]
  train_limit: 48
  train: {{max_steps: 3, batch_size: 16, learning_rate: 3.0e-3}}
target:
  tasks: [tiny-xnli]
  strategies: [stack, continue]
  train_limit: 32
  train: {{max_steps: 3, batch_size: 16}}
controls: {{shuffled_labels: [tiny-nli], step_matched: true, capacity_matched: true, pooled: true}}
expect:
  - {{setup: tiny-nli+continue, vs: shuffled, direction: ">", why: task transfer}}
  - {{setup: tiny-nli+stack, vs: capacity-matched, direction: "<", language: de}}
  - {{setup: tiny-nli+stack, vs: tiny-nli+continue, direction: "<"}}
evaluate: {{splits: [validation, test], limit: 20, languages: [en, de], forms: [unmerged, merged]}}
bench: {{enabled: false}}
"""


def _write(tmp_path, text, name="r.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    out = tmp / "out"
    assert main(["run", str(_write(tmp, RECIPE.format(out=out)))]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_control_is_a_row_and_each_setup_is_compared_with_its_controls(study):
    out, results = study
    target = results["targets"]["tiny-xnli"]
    rows = {(r["label"], r["form"]): r for r in target["rows"]}
    assert {label for label, _ in rows} == {
        "target-only",
        "tiny-nli+stack",
        "tiny-nli+continue",
        "tiny-nli-shuffled+stack",
        "tiny-nli-shuffled+continue",
        "step-matched-6",
        "capacity-matched",
        "tiny-nli-pooled",
    }  # step-matched: 3 intermediate + 3 target steps
    assert ("capacity-matched", "merged") not in rows  # controls are evaluated unmerged only, on test only
    dev = {r["label"] for r in results["dev_targets"]["tiny-xnli"]["rows"]}
    assert dev == {"target-only", "tiny-nli+stack", "tiny-nli+continue"}
    assert set(results["xtreme"]["setups"]) == {"baseline", "tiny-nli+stack", "tiny-nli+continue"}  # no control
    stack = rows[("tiny-nli+stack", "unmerged")]
    assert set(stack["comparisons"]) == {"shuffled", "step-matched", "capacity-matched", "pooled"}
    assert stack["comparisons"]["shuffled"]["vs"] == "tiny-nli-shuffled+stack"
    assert set(rows[("tiny-nli+continue", "unmerged")]["comparisons"]) == {"shuffled", "step-matched", "pooled"}
    for row in rows.values():
        assert row["seeds"] == [0, 1] and row["average"]["n"] == 2
    b = stack["average_benefit"]
    assert b["n_seeds"] == 2 and b["n_examples"] == 40 and "seeds x test examples" in b["method"]
    assert b["ci"][0] <= b["mean"] <= b["ci"][1]
    assert target["n_examples"] == {"en": 20, "de": 20}
    meta = json.loads((out / "adapters/tiny-xnli/capacity-matched/seed-0/adapter/adapterx.json").read_text())
    assert meta["spec"]["r"] == 8
    steps = json.loads((out / "adapters/tiny-xnli/step-matched-6/seed-1/phase.json").read_text())["steps"]
    assert steps == 6


def test_target_run_s_sits_on_intermediate_run_s(study):
    out, _ = study
    for seed in (0, 1):
        meta = json.loads((out / f"adapters/tiny-xnli/tiny-nli+stack/seed-{seed}/adapter/adapterx.json").read_text())
        assert f"intermediate/tiny-nli/seed-{seed}" in meta["requires"][0]["path"]
        inter = json.loads((out / f"adapters/intermediate/tiny-nli/seed-{seed}/adapter/adapterx.json").read_text())
        assert inter["training"]["config"]["seed"] == seed


def test_the_benefit_is_paired_by_seed(study):
    _, results = study
    rows = {(r["label"], r["form"]): r for r in results["targets"]["tiny-xnli"]["rows"]}
    setup, base = rows[("tiny-nli+continue", "unmerged")], rows[("target-only", "unmerged")]
    per_seed = [a - b for a, b in zip(setup["per_language"]["de"]["values"], base["per_language"]["de"]["values"])]
    assert setup["benefit"]["de"]["mean"] == pytest.approx(sum(per_seed) / len(per_seed))


def test_predictions_are_kept_with_confusion_matrices(study):
    out, results = study
    kept = load_file(str(out / "evaluate/test/tiny-xnli/target-only/seed-0/unmerged/predictions.safetensors"))
    assert set(kept) == {"en.predicted", "en.gold", "de.predicted", "de.gold"}
    assert kept["en.predicted"].dtype == np.uint8 and len(kept["de.gold"]) == 20
    base = [
        r for r in results["targets"]["tiny-xnli"]["rows"] if r["label"] == "target-only" and r["form"] == "unmerged"
    ][0]
    matrix = np.array(base["confusion"]["en"])
    assert matrix.shape == (3, 3) and matrix.sum() == 40  # 20 examples x 2 seeds
    accuracy = 100 * np.trace(matrix) / matrix.sum()
    assert accuracy == pytest.approx(base["per_language"]["en"]["mean"])


def test_expectations_are_checked_and_the_report_reads_them(study):
    out, results = study
    found = {(e["setup"], e["vs"]): e for e in results["expectations"]}
    assert found[("tiny-nli+continue", "shuffled")]["vs_row"] == "tiny-nli-shuffled+continue"
    assert found[("tiny-nli+stack", "capacity-matched")]["language"] == "de"
    for e in found.values():
        lo, hi = e["difference"]["ci"]
        expected = (
            "held"
            if (lo > 0 if e["direction"] == ">" else hi < 0)
            else "contradicted"
            if (hi < 0 or lo > 0)
            else "inconclusive"
        )
        assert e["verdict"] == expected
    report = (out / "report.md").read_text()
    assert "Expectations written in the recipe before the run" in report and "vs shuffled labels" in report
    assert "2 seed(s) × 20 test examples per language" in report and "Per-class recall" in report
    readme = readme_summary(results, "adapterx run r.yaml")  # what `--readme` writes into README.md
    assert "vs shuffled labels" in readme and "Expectations written in the recipe" in readme and "Reading:" in readme
    assert "English dev accuracy" in readme  # how well the intermediate task was learned


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("max_steps: 3, batch_size: 16}\ncontrols", "max_steps: 3, batch_size: 16, seed: 4}\ncontrols"),
            r"target.train.seed: seeds are set by the recipe's `seeds`",
        ),
        (
            ("shuffled_labels: [tiny-nli]", "shuffled_labels: [tiny-negation]"),
            r"controls.shuffled_labels: 'tiny-negation' is not one of intermediate.tasks",
        ),
        (
            ("strategies: [stack, continue]", "strategies: [continue]"),
            r"controls.capacity_matched matches strategy 'stack'",
        ),
        (("vs: shuffled", "vs: tiny-nli+fuse"), r"expect\[0\].vs: 'tiny-nli\+fuse' is neither a row"),
        (
            ("setup: tiny-nli+stack, vs: tiny-nli+continue", "setup: tiny-nli-pooled, vs: shuffled"),
            r"expect\[2\].vs: 'shuffled' for 'tiny-nli-pooled': .* not a setup built on an intermediate adapter",
        ),
        (('direction: "<", language: de', 'direction: "=", language: de'), r"expect\[1\].direction: must be one of"),
        (("tasks: [tiny-nli]\n", "tasks: [tiny-sst]\n"), r"controls.shuffled_labels: 'tiny-nli' is not one of"),
        (("seeds: [0, 1]", "seeds: [0, 1]\nthreads: -1"), r"threads: 0 \(torch's default\) or a positive number"),
    ],
)
def test_recipe_errors_name_the_field(tmp_path, change, message):
    text = RECIPE.format(out=tmp_path / "o")
    assert change[0] in text, change[0]
    path = _write(tmp_path, text.replace(*change))
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_a_kind_that_cannot_stack_leaves_the_capacity_control_out_not_the_recipe(tmp_path):
    text = RECIPE.format(out=tmp_path / "o").replace("{kind: lora, r: 4}", "{kind: prompt, num_virtual_tokens: 4}")
    recipe = load_recipe(_write(tmp_path, text))  # expectations about 'stack' rows do not make it invalid
    assert recipe.strategies() == ["continue"]
    assert "'stack' is left out" in recipe.skipped_controls()["capacity_matched"]


def test_pooled_needs_a_matching_label_space(tmp_path):
    text = RECIPE.format(out=tmp_path / "o").replace("shuffled_labels: [tiny-nli], ", "")
    text = text.replace("tiny-nli", "tiny-sst")
    with pytest.raises(RecipeError, match=r"controls.pooled: no intermediate task has the label space"):
        load_recipe(_write(tmp_path, text))
